"""
The server's bind port as fuzz targets: a :class:`ServerWorld` (a
RelayServer on a MemoryReactorClock, its connections on Wires) fed the
first bytes of a plain connection, a logged-in control channel, or a
tcp_mux session.
"""

import contextlib
import time

from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from labrelay import FRP_VERSION
from labrelay.config import parse_server_config
from labrelay.mux.frames import HEADER_SIZE, FrameParser
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.crypto import StreamDecryptor, StreamEncryptor, derive_key
from labrelay.protocol.framing import (
    HEADER_LENGTH,
    MAX_BODY_LENGTH,
    V2_MAGIC,
    MessageParser,
    encode_message,
)
from labrelay.server import service as server_service
from labrelay.server.bind_port import FrpConnectionFactory
from labrelay.server.connection import MAX_EARLY_WORK_BYTES, ServerConnection
from labrelay.server.service import RelayServer

from .. import vectors
from .core import RUN_ID, TOKEN, Target, Wire, bound, chunked, label, lose
from .decoders import TYPE_BYTES, captured_messages, client_streams, frame, with_run_id
from .yamux import YAMUX_TOKENS, yamux_corpus

# -- the server's bind port --------------------------------------------------


def _server_config(mux: bool):
    return parse_server_config(
        f"[common]\nbind_port = 7000\ntoken = {TOKEN}\n"
        f"tcp_mux = {str(mux).lower()}\nvhost_http_port = 8080\n"
        "subdomain_host = web.example.test\n",
        source="frps.ini",
    )


_CONFIGS = {}


def login_frame(run_id: str = RUN_ID) -> bytes:
    """A Login with a valid privilege key for :data:`TOKEN`."""
    now = int(time.time())
    return encode_message(
        messages.Login(
            version=FRP_VERSION,
            privilege_key=privilege_key(TOKEN, now),
            timestamp=now,
            run_id=run_id,
            pool_count=1,
        )
    )


class ServerWorld:
    """A RelayServer on a MemoryReactorClock and the frp connections made
    to its bind port (Wires), with the reactor's part done by hand."""

    def __init__(self, mux: bool):
        if mux not in _CONFIGS:
            _CONFIGS[mux] = _server_config(mux)
        self.reactor = MemoryReactorClock()
        self.server = RelayServer(_CONFIGS[mux], self.reactor, None)
        self.server.startService()
        self.factory = FrpConnectionFactory(self.server.context)
        self.wires = []

    def connect(self):
        """A new connection on the bind port (after TLS sniffing)."""
        wire = Wire(port=40000 + len(self.wires))
        protocol = self.factory.buildProtocol(wire.getPeer())
        protocol.makeConnection(wire)
        self.wires.append((protocol, wire))
        return protocol, wire

    def finish(self) -> None:
        """Every connection lost, the service stopped, no timer left."""
        for protocol, wire in self.wires:
            lose(protocol, wire)
        stopped = []
        self.server.stopService().addBoth(stopped.append)
        bound(
            stopped == [None] or stopped and not isinstance(stopped[0], Failure),
            f"stopService: {stopped}",
        )
        bound(
            self.reactor.getDelayedCalls() == [],
            f"delayed calls left: {self.reactor.getDelayedCalls()}",
        )


@contextlib.contextmanager
def fixed_run_id():
    """The server hands out :data:`RUN_ID` (the captured work connections
    carry it)."""
    saved = server_service.new_run_id
    server_service.new_run_id = lambda: RUN_ID
    try:
        yield
    finally:
        server_service.new_run_id = saved


class ConnectionBounds:
    """
    The bounds of one frp connection's input buffers, checked after each
    read: less than one maximal frame while open; once closed (but still
    read, as TLS is) or ignoring its input, no growth at all; nothing once
    aborted (the buffers go with the connection).
    """

    def __init__(self, connection: ServerConnection, wire):
        self.connection = connection
        self.wire = wire
        self._at_close = None

    def check(self, piece: int) -> None:
        connection, wire = self.connection, self.wire
        if wire.aborted:
            return
        if connection.work_owner is not None:
            held = connection._early_size
            bound(
                held <= MAX_EARLY_WORK_BYTES + piece,
                f"work connection holds {held} early bytes",
            )
            return
        held = connection._parser.buffered
        # a refused first message may be answered later: input is ignored
        stopped = wire.disconnecting or getattr(connection, "_ignoring", False)
        if not stopped:
            bound(
                held < HEADER_LENGTH + MAX_BODY_LENGTH,
                f"connection parser holds {held} undecoded bytes",
            )
        elif self._at_close is None:
            self._at_close = held
            bound(
                held < HEADER_LENGTH + MAX_BODY_LENGTH + piece,
                f"closing connection holds {held} undecoded bytes",
            )
        else:
            bound(
                held <= self._at_close,
                f"stopped connection keeps buffering input: {held} bytes",
            )


def server_output(raw: bytes) -> list:
    """The names of the messages a server wrote on one frp connection
    (decrypting after a LoginResp); raises unless they are well-formed."""
    if raw[:1] == b"\x00":  # the tcp_mux mismatch answer: yamux frames
        frames = FrameParser().feed(raw)
        bound(
            sum(HEADER_SIZE + len(f.payload) for f in frames) == len(raw),
            f"a cut yamux refusal: {raw!r}",
        )
        return ["yamux refusal"]
    parser = MessageParser()
    parser.feed(raw)
    names = []
    for message in parser.messages():
        names.append(
            message.name + ("(error)" if getattr(message, "error", "") else "")
        )
        if isinstance(message, messages.LoginResp) and not message.error:
            rest = parser.take_rest()
            parser.feed(StreamDecryptor(derive_key(TOKEN)).decrypt(rest))
    return names


def _state(wire: Wire) -> str:
    return "aborted" if wire.aborted else "closed" if wire.disconnecting else "open"


class ServerPlainTarget(Target):
    """
    The first bytes of a plain (tcp_mux = false) connection to the bind
    port, with a client already logged in as :data:`RUN_ID`: closed or
    waiting, never an exception, bounded buffers.  After a close that is
    not an abort the bytes keep coming, as they do over TLS, whose peer
    may ignore our close_notify.
    """

    name = "server-plain"
    tokens = (
        login_frame(),
        V2_MAGIC,
        b"\x16\x03\x01",
        b"\x00\x00\x00\x01",
        frame(b"v", b'{"proxy_name":"x"}'),
        frame(b"h", b"{}"),
    )

    def corpus(self):
        streams = [
            with_run_id(s)
            for sc in (vectors.PLAIN_NOMUX, vectors.LOGIN_BAD_TOKEN)
            for s in client_streams(sc)
        ]
        return streams + [login_frame(), frame(b"v", b'{"proxy_name":"x"}')]

    def run(self, data, cuts):
        world = ServerWorld(mux=False)
        with fixed_run_id():
            control, _ = world.connect()
            control.dataReceived(login_frame())
            connection, wire = world.connect()
            bounds = ConnectionBounds(connection, wire)
            for piece in chunked(data, cuts):
                if wire.aborted:
                    break
                connection.dataReceived(piece)
                bounds.check(len(piece))
            names = server_output(wire.value())
            world.reactor.advance(world.server.first_message_timeout)
            state = _state(wire)
            world.finish()
        return f"{state}: {','.join(sorted(set(names)))}"


class ControlTarget(Target):
    """The control channel after login: the input is the plaintext of the
    AES-CFB stream the client sends (any bytes), decrypted and parsed by
    the server."""

    name = "control"
    tokens = tuple(frame(t, b"{}") for t in TYPE_BYTES) + (
        frame(b"p", b'{"proxy_name":"a","proxy_type":"http","subdomain":"a"}'),
        frame(b"p", b'{"proxy_name":"t","remote_port":65536}'),
    )

    def corpus(self):
        plain = [
            frame(t, body)
            for d, t, body, enc in captured_messages()
            if d == "c2s" and enc
        ]
        return plain + [b"".join(plain)]

    def run(self, data, cuts):
        world = ServerWorld(mux=False)
        with fixed_run_id():
            connection, wire = world.connect()
            connection.dataReceived(login_frame())
            bound(connection.control is not None, "the login failed")
            encryptor = StreamEncryptor(derive_key(TOKEN))
            bounds = ConnectionBounds(connection, wire)
            for piece in chunked(data, cuts):
                if wire.aborted:
                    break
                connection.dataReceived(encryptor.encrypt(piece))
                bounds.check(len(piece))
            names = server_output(wire.value())
            state = _state(wire)
            world.finish()
        return f"{state}: {','.join(sorted(set(names)))}"


class ServerMuxTarget(Target):
    """The bytes of a tcp_mux connection to the bind port: a ServerSession
    whose streams are frp connections."""

    name = "server-mux"
    tokens = YAMUX_TOKENS + (login_frame(),)

    def corpus(self):
        return [with_run_id(c) for c in yamux_corpus("c2s")]

    def run(self, data, cuts):
        world = ServerWorld(mux=True)
        with fixed_run_id():
            session, wire = world.connect()
            closed = []
            session.when_closed().addCallback(closed.append)
            for piece in chunked(data, cuts):
                if wire.aborted:
                    break
                session.dataReceived(piece)
                world.reactor.advance(1)
                window = session._max_window
                bound(
                    session._parser.buffered < HEADER_SIZE + window,
                    f"session parser holds {session._parser.buffered}",
                )
                for stream in list(session._streams.values()):
                    bound(
                        stream.receive_buffered <= window,
                        f"stream {stream.stream_id} holds "
                        f"{stream.receive_buffered} received bytes",
                    )
                    if (
                        isinstance(stream.protocol, ServerConnection)
                        and stream.protocol.work_owner is None
                    ):
                        held = stream.protocol._parser.buffered
                        bound(
                            held < HEADER_LENGTH + MAX_BODY_LENGTH,
                            f"stream {stream.stream_id} holds {held} undecoded bytes",
                        )
            state = f"{_state(wire)}, {min(session.streams_open, 3)} streams"
            if closed:
                state += "; " + label(closed[0])
            world.finish()
        return state
