"""
The one place where labrelay copies bytes between two connections.

:class:`Splice` joins two :class:`RelayedProtocol` instances (a user
connection and a work connection on the server; a work connection and a
local service connection on the client).  It

* cross-registers the two transports as streaming producers, so a reader
  that stops reading stops the other side's reads instead of letting either
  process buffer without bound;
* passes bytes through each side's :class:`~labrelay.protocol.codec.PayloadCodec`
  (frp's per-proxy encryption and compression);
* propagates half-close: when one side ends its input, the other side's
  write half is shut and the opposite direction keeps flowing until it ends
  too (frp closes both at the first EOF; that loses replies of protocols such
  as ``echo … | nc``).  A transport that cannot half-close (TLS) is closed
  fully instead, as frp does;
* tears both sides down when either is lost, after the other side has
  written what it holds;
* counts the bytes in each direction.

Close trap: Twisted never completes ``loseConnection`` or
``loseWriteConnection`` while a *paused* streaming producer is registered on
that transport, so producers are always unregistered first.
"""

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from .errors import ProtocolError
from .interfaces import ICountedSink
from .writethrough import write_now


def supports_half_close(transport) -> bool:
    """Whether shutting *transport*'s write half leaves its read half usable."""
    if isinstance(transport, TLSMemoryBIOProtocol):
        return False  # it would shut the TCP socket under the TLS stream
    return callable(getattr(transport, "loseWriteConnection", None))


def unregister_producer(transport) -> None:
    """Unregister *transport*'s producer, if it has one (strict transports,
    such as StringTransport, refuse to unregister nothing)."""
    try:
        transport.unregisterProducer()
    except RuntimeError:
        pass


def set_no_delay(transport) -> None:
    """Turn Nagle off where the transport allows it (small frames must not wait)."""
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(True)
        except Exception:  # not a TCP socket underneath (unix, memory)
            pass


@implementer(IHalfCloseableProtocol)
class RelayedProtocol(Protocol):
    """
    Base class of the protocols that end up on one side of a splice.

    Their input goes to their :attr:`sink` (an
    :class:`~labrelay.interfaces.ISink`: a :class:`Splice`, an HTTP
    exchange, an idle work connection's keeper) once one is set.  Before
    that, bytes go to :meth:`data_before_splice`, EOF to
    :meth:`eof_before_splice`.  Subclasses override those and
    :meth:`connection_ended` for their own bookkeeping.
    """

    #: where input goes (an ISink), or None before the splice
    sink = None

    def dataReceived(self, data):
        if self.sink is not None:
            self.sink.forward(self, data)
        else:
            self.data_before_splice(data)

    def readConnectionLost(self):
        if self.sink is not None:
            self.sink.end_of_input(self)
        else:
            self.eof_before_splice()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        if self.sink is not None:
            self.sink.connection_lost(self, reason)
        self.connection_ended(reason)

    # Hooks for subclasses.

    def data_before_splice(self, data):
        """Bytes that arrive before the splice: keep them by default."""
        self.__dict__.setdefault("early_data", []).append(data)

    def eof_before_splice(self):
        """The peer ended its input before the splice: close."""
        self.transport.loseConnection()

    def connection_ended(self, reason):
        """The connection is gone (after the splice was told)."""

    def take_early_data(self) -> bytes:
        """Return and forget the bytes :meth:`data_before_splice` kept."""
        return b"".join(self.__dict__.pop("early_data", []))


class _Side:
    __slots__ = ("protocol", "codec", "input_ended", "lost", "bytes_in")

    def __init__(self, protocol, codec):
        self.protocol = protocol
        self.codec = codec
        self.input_ended = False
        self.lost = False
        self.bytes_in = 0


@implementer(ICountedSink)
class Splice:
    """
    Relay between protocols *a* and *b*.

    :param a_codec: decodes what *a* receives and encodes what is written to
        *a* (None: bytes pass unchanged).  Likewise *b_codec*.
    :param on_close: called once with the splice when both sides are done.
    """

    _log = Logger()

    def __init__(
        self, a, b, *, a_codec=None, b_codec=None, on_close=None, description=""
    ):
        self._a = _Side(a, a_codec)
        self._b = _Side(b, b_codec)
        self._on_close = on_close
        self._closed = False
        self.description = description

    @property
    def bytes_a_to_b(self) -> int:
        return self._a.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self._b.bytes_in

    def _sides(self, protocol):
        if protocol is self._a.protocol:
            return self._a, self._b
        return self._b, self._a

    def start(self, a_pending: bytes = b"", b_pending: bytes = b"") -> None:
        """
        Join the two sides.  *a_pending* holds bytes *a* received before the
        splice (they are forwarded first); both transports are resumed.
        """
        a, b = self._a.protocol, self._b.protocol
        a.sink = b.sink = self
        for side in (self._a, self._b):
            set_no_delay(side.protocol.transport)
        a.transport.registerProducer(b.transport, True)
        b.transport.registerProducer(a.transport, True)
        if a_pending:
            self.forward(a, a_pending)
        if b_pending and not self._closed:
            self.forward(b, b_pending)
        if not self._closed:
            a.transport.resumeProducing()
            b.transport.resumeProducing()

    def forward(self, source, data: bytes) -> None:
        """Bytes arrived on *source*: write them to the other side."""
        src, dst = self._sides(source)
        if dst.lost or self._closed:
            return
        src.bytes_in += len(data)
        try:
            if src.codec is not None:
                data = src.codec.decode(data)
            if dst.codec is not None and data:
                data = dst.codec.encode(data)
        except ProtocolError as e:
            self._log.warn(
                "{splice}: dropping both sides: {error}",
                splice=self.description,
                error=e,
            )
            self.abort()
            return
        if data:
            write_now(dst.protocol.transport, data)

    def end_of_input(self, source) -> None:
        """*source* will send no more: shut the other side's write half."""
        src, dst = self._sides(source)
        src.input_ended = True
        if dst.lost:
            return
        dst_transport = dst.protocol.transport
        if src.input_ended and dst.input_ended:
            self._close_both()
        elif supports_half_close(dst_transport):
            unregister_producer(dst_transport)
            dst_transport.loseWriteConnection()
        else:
            self._close_both()

    def connection_lost(self, protocol, reason) -> None:
        """*protocol*'s connection is gone: close the other side."""
        side, other = self._sides(protocol)
        if side.lost:
            return
        side.lost = True
        if not other.lost:
            transport = other.protocol.transport
            unregister_producer(transport)
            transport.loseConnection()
        else:
            self._finish()

    def _close_both(self) -> None:
        for side in (self._a, self._b):
            if not side.lost:
                transport = side.protocol.transport
                unregister_producer(transport)
                transport.loseConnection()

    def abort(self) -> None:
        """Drop both connections at once (a codec error, a shutdown)."""
        for side in (self._a, self._b):
            if not side.lost:
                transport = side.protocol.transport
                unregister_producer(transport)
                abort = getattr(transport, "abortConnection", None)
                (abort or transport.loseConnection)()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close(self)
