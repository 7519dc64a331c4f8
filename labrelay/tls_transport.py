# -*- test-case-name: tests.unit.test_tls_transport,tests.unit.test_tls -*-
"""
The TLS transport of the link between client and server: Twisted's
:class:`TLSMemoryBIOProtocol`, with what it sends going out at once.

Twisted's default TLS transport (``BufferingTLSTransport``) gathers writes
below 64 kB and encrypts them on the next reactor turn, and then hands the
records to the TCP transport, which sends them one turn later still.  On a
relay every hop pays that twice: the round trip through a TLS link took
75-80 µs longer than through a plain one.  :class:`TLSTransport` instead

* encrypts each write at once, in one call to OpenSSL however long it is
  (OpenSSL cuts it into 16 KiB records), and reads the records back only
  after the whole write, so that a large write leaves in one large send
  rather than one per record;
* hands the records to :func:`~labrelay.writethrough.write_now`, straight to
  the socket when it is idle;
* hands what one read from the socket decrypts to (several records) to the
  protocol in one call, not one call per 16 KiB record: the yamux session
  parses once, and a stream's bytes leave for the local service in one send;
* lets go of its producer when TLS ends (see :meth:`_tlsShutdownFinished`).

This reaches into two methods Twisted keeps private (``_write``,
``_flushSendBIO``) and one attribute (``_tlsConnection``); it is confined to
this module and pinned by its tests.
"""

from __future__ import annotations

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from .writethrough import write_now

#: bytes read back from the memory BIO per call
BIO_READ_SIZE = 2**16

#: application bytes asked of OpenSSL per call (it answers one record,
#: at most 16 KiB, at a time)
RECV_SIZE = 2**15


class TLSTransport(TLSMemoryBIOProtocol):
    """
    (See the module docstring.)

    When the peer ends TLS while a relay has registered a paused producer on
    this transport, Twisted's own shutdown asks the TCP transport to close,
    and a TCP transport with a paused producer resumes the producer instead
    of closing: the connection would never end.  Nothing can be produced
    into a finished TLS stream, so the producer is dropped first.
    """

    def _write(self, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        tls = self._tlsConnection
        done = 0
        total = len(data)
        view = memoryview(data)  # slices without copies
        try:
            while done < total:
                # OpenSSL cuts one call into records itself, and the memory
                # BIO takes them all: usually one call per write
                done += tls.send(view[done:] if done else data)
        except WantReadError:
            # a renegotiation or key update waits for the peer; Twisted
            # writes these bytes once it has read what it needs
            self._bufferedWrite(bytes(view[done:]))
        except Error:
            failure = Failure()
            self._flushSendBIO()  # an alert OpenSSL may have written
            self._tlsShutdownFinished(failure)
            return
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        tls = self._tlsConnection
        chunks = []
        while True:
            try:
                chunk = tls.bio_read(BIO_READ_SIZE)
            except WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < BIO_READ_SIZE:
                break  # the BIO is empty: no call that only raises WantRead
        if chunks:
            write_now(
                self.transport, chunks[0] if len(chunks) == 1 else b"".join(chunks)
            )

    def _flushReceiveBIO(self) -> None:
        tls = self._tlsConnection
        chunks = []
        while not self._lostTLSConnection:
            try:
                chunks.append(tls.recv(RECV_SIZE))
            except WantReadError:
                break
            except ZeroReturnError:
                # the peer's close_notify: what came before it first
                self._deliver(chunks)
                chunks = []
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                failure = Failure()
                self._deliver(chunks)
                chunks = []
                self._tlsShutdownFinished(failure)
        self._deliver(chunks)
        self._flushSendBIO()

    def _deliver(self, chunks) -> None:
        if chunks and not self._aborted:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            ProtocolWrapper.dataReceived(self, data)

    def _tlsShutdownFinished(self, reason):
        if getattr(self, "_producer", None) is not None:
            self._producer = None
            self._producerPaused = False
            self.transport.unregisterProducer()
        super()._tlsShutdownFinished(reason)


class TLSFactory(TLSMemoryBIOFactory):
    """``TLSMemoryBIOFactory`` building :class:`TLSTransport` connections."""

    protocol = TLSTransport
