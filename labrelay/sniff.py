# -*- test-case-name: tests.unit.test_sniff -*-
"""
First-byte sniffing on the server's bind port: TLS or plain frp.

frps reads one byte from every accepted connection (within 10 s):

* ``0x17`` (frp's custom TLS head byte): drop it, TLS on the rest;
* ``0x16`` (a bare TLS ClientHello): TLS, including that byte;
* anything else: plain frp, every byte kept -- unless ``tls_only`` is set,
  in which case the connection is refused.

:class:`SniffingFactory` wraps the plain frp factory.  Its protocol waits for the
first byte (at most ``first_byte_timeout``), builds the inner protocol (the
plain one, or a server-side :class:`TLSMemoryBIOProtocol` around the plain one),
connects it to the *real* transport and then gets out of the way: reads go
to the inner protocol without an extra call, and its writes and producer
registration go straight to the socket.  Between the TLS layer and the frp
protocol sits :class:`_TLSApplication`, equally thin, which logs a failed
handshake in one line (peer address and OpenSSL's reason).

Admission: the factory's optional ``admit`` callable is asked about every
accepted connection before anything else happens, with its peer address
and a callback.  It returns a ticket (anything with ``release()``), or None
to have the connection closed at once (a flood cap; the caller logs).  The
ticket is offered to the inner frp protocol through its
``adopt_admission(ticket)`` method, which releases it once the peer has
authenticated; the sniffer releases it in any case when the connection
ends.  The callback, ``ended(evicted)``, is the ticket holder's way to end
the connection: on its deadline (``evicted`` false; the ticket has a
``timeout`` attribute, in seconds) the sniffer logs one line -- the frp
protocol's own, from its ``unauthenticated_timeout()`` method, once it
exists -- and aborts the connection, whatever is under way (a TLS
handshake, a yamux session); when evicted it aborts it silently (the
caller logs evictions, rate-limited).

Half-close: a plain inner protocol that provides :class:`IHalfCloseableProtocol`
receives ``readConnectionLost``/``writeConnectionLost``.  A TLS inner protocol
does not support half-close (:class:`TLSMemoryBIOProtocol` is not half-closeable),
so a TLS connection is always closed in both directions at once.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from labrelay.tls import (
    TLS_HANDSHAKE_BYTE,
    TLS_HEAD_BYTE,
    describe_tls_error,
)
from labrelay.tls_transport import TLSFactory


def peer_text(transport: Any) -> str:
    """``host:port`` of a transport's peer (``[v6]:port`` for IPv6), for logs."""
    try:
        peer = transport.getPeer()
    except Exception:
        return "unknown peer"
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is None or port is None:
        return str(peer)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(IHandshakeListener)
class _TLSApplication(Protocol):
    """
    The protocol a server-side TLS layer wraps: it hands the TLS transport
    straight to the frp protocol and forwards every event to it, and logs
    a TLS failure (with the peer and OpenSSL's reason) on the way.
    """

    _log = Logger()

    def __init__(self, inner: IProtocol) -> None:
        self._inner = inner
        self._handshake_done = False

    def makeConnection(self, transport: Any) -> None:
        self.connected = 1
        self.transport = transport
        # Decrypted reads go straight to the frp protocol (see _start_inner).
        self.dataReceived = self._inner.dataReceived  # type: ignore[method-assign]
        self._inner.makeConnection(transport)

    def handshakeCompleted(self) -> None:
        self._handshake_done = True
        if IHandshakeListener.providedBy(self._inner):
            self._inner.handshakeCompleted()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = 0
        if reason.check(SSL.Error):
            self._log.warn(
                "{peer}: TLS {stage} failed: {why}",
                peer=peer_text(self.transport),
                stage="connection" if self._handshake_done else "handshake",
                why=describe_tls_error(reason),
            )
        self._inner.connectionLost(reason)


class _SniffingProtocol(Protocol):
    """
    Waits for the first byte, then hands the connection to the protocol it
    selects and forwards everything to it.
    """

    _log = Logger()

    def __init__(self, factory: SniffingFactory, addr: IAddress) -> None:
        self._factory = factory
        self._addr = addr
        self._inner: Optional[IProtocol] = None
        self._timer: Optional[IDelayedCall] = None
        self._closing = False
        self._admission: Any = None
        self._frp: Optional[IProtocol] = None  # the plain (frp) protocol

    # -- before the first byte ---------------------------------------------

    def connectionMade(self) -> None:
        admit = self._factory.admit
        if admit is not None:
            self._admission = admit(self.transport.getPeer(), self._admission_ended)
            if self._admission is None:
                self._closing = True
                self.transport.abortConnection()
                return
        self._timer = self._factory.clock.callLater(
            self._factory.first_byte_timeout, self._first_byte_timed_out
        )

    def _first_byte_timed_out(self) -> None:
        self._timer = None
        self._log.info(
            "{peer}: no data within {timeout}s of connecting; closing",
            peer=peer_text(self.transport),
            timeout=self._factory.first_byte_timeout,
        )
        self._refuse()

    def _admission_ended(self, evicted: bool) -> None:
        """The admission's deadline passed, or it was evicted: abort."""
        self._cancel_timer()
        if self._closing:
            return
        self._closing = True
        if not evicted:
            explain = getattr(self._frp, "unauthenticated_timeout", None)
            if explain is not None:
                explain()
            else:
                self._log.info(
                    "{peer}: {what} within {timeout}s of connecting; closing",
                    peer=peer_text(self.transport),
                    what="no data" if self._frp is None else "not authenticated",
                    timeout=getattr(self._admission, "timeout", "?"),
                )
        self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _refuse(self) -> None:
        self._closing = True
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._closing or not data:
            return
        self._cancel_timer()
        first = data[:1]
        is_tls = first == TLS_HEAD_BYTE or first == TLS_HANDSHAKE_BYTE
        if first == TLS_HEAD_BYTE:
            data = data[1:]
        if not self._accept(is_tls, first):
            self._refuse()
            return
        inner = self._factory.plain_factory.buildProtocol(self._addr)
        if inner is None:
            self._refuse()
            return
        self._frp = inner
        adopt = getattr(inner, "adopt_admission", None)
        if self._admission is not None and adopt is not None:
            adopt(self._admission)
        tls_factory = self._factory.tls_factory
        if is_tls and tls_factory is not None:
            inner = tls_factory.protocol(tls_factory, _TLSApplication(inner))
        self._start_inner(inner)
        if data:
            inner.dataReceived(data)

    def _accept(self, is_tls: bool, first: bytes) -> bool:
        if is_tls and self._factory.tls_factory is None:
            reason = "TLS is not configured"
        elif not is_tls and self._factory.tls_only:
            reason = "tls_only is set"
        else:
            return True
        self._log.warn(
            "{peer}: refusing a {kind} connection ({reason}; first byte {first})",
            peer=peer_text(self.transport),
            kind="TLS" if is_tls else "non-TLS",
            reason=reason,
            first=f"0x{first[0]:02x}",
        )
        return False

    def _start_inner(self, inner: IProtocol) -> None:
        self._inner = inner
        # From here on every read goes straight to the inner protocol: the
        # bound method replaces ours on this instance, so the data path costs
        # no extra call (the same trick BufferingTLSTransport uses for write).
        self.dataReceived = inner.dataReceived  # type: ignore[method-assign]
        if IHalfCloseableProtocol.providedBy(inner):
            # Declared only now, and only if the inner protocol can take it:
            # the reactor asks for the interface when the peer half-closes,
            # and a non-half-closeable protocol must get connectionLost then.
            alsoProvides(self, IHalfCloseableProtocol)
        inner.makeConnection(self.transport)

    # -- forwarding ----------------------------------------------------------

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        if self._admission is not None:
            self._admission.release()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connectionLost(reason)

    def readConnectionLost(self) -> None:
        if self._inner is not None:
            IHalfCloseableProtocol(self._inner).readConnectionLost()

    def writeConnectionLost(self) -> None:
        if self._inner is not None:
            IHalfCloseableProtocol(self._inner).writeConnectionLost()

    def logPrefix(self) -> str:
        prefix = getattr(self._inner, "logPrefix", None)
        return prefix() if prefix is not None else self.__class__.__name__


class SniffingFactory(ServerFactory):
    """
    The bind-port factory: builds, per accepted connection, a protocol that
    picks TLS or plain frp from the first byte.

    :param plain_factory: builds the frp protocol (control/work/visitor or
        the mux session), whether the connection is TLS or plain.
    :param tls_options: an :class:`IOpenSSLServerConnectionCreator` (see
        :func:`~labrelay.tls.server_tls_options`), or ``None`` to refuse TLS.
    :param tls_only: refuse plain connections.
    :param clock: the reactor (for the first-byte timeout and TLS writes).
    :param first_byte_timeout: seconds to wait for the first byte.
    :param admit: called with each accepted connection's peer address and
        a callback ending it; returns a ticket to keep (see the module
        docstring) or None to close the connection at once.  None: every
        connection is accepted.
    """

    def __init__(
        self,
        plain_factory: IProtocolFactory,
        tls_options: Any,
        *,
        tls_only: bool,
        clock: IReactorTime,
        first_byte_timeout: float = 10,
        admit: Optional[Callable[[IAddress, Callable[[bool], None]], Any]] = None,
    ) -> None:
        self.plain_factory = plain_factory
        self.admit = admit
        self.tls_only = tls_only
        self.clock = clock
        self.first_byte_timeout = first_byte_timeout
        self.tls_factory: Optional[TLSMemoryBIOFactory] = None
        if tls_options is not None:
            self.tls_factory = TLSFactory(
                tls_options, False, plain_factory, clock=clock
            )

    # The plain factory logs its own start and stop.
    noisy = False

    def buildProtocol(self, addr: IAddress) -> _SniffingProtocol:
        return _SniffingProtocol(self, addr)

    def doStart(self) -> None:
        self.plain_factory.doStart()
        super().doStart()

    def doStop(self) -> None:
        super().doStop()
        self.plain_factory.doStop()
