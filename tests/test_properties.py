# -*- test-case-name: tests.test_properties -*-
"""
Property-based tests of every decoder that reads bytes from the network or
text from a config file: whatever arrives, labrelay answers with its own
error type, a well-formed refusal or a close, and holds a bounded number of
bytes.

Each target is a *driver* (:class:`Target`): ``run(data, cuts)`` feeds
``data``, cut at ``cuts``, to one decoder or one protocol on memory
transports, raises :class:`BoundExceeded` when a buffer or memory bound is
broken (any other exception escaping is a bug too) and returns a short
outcome label.  The hypothesis tests below and ``tools/fuzz.py`` share the
drivers, the corpus of valid inputs (built from the frp captures in
``tests/data``) and the mutator.
"""

import contextlib
import json
import re
import tempfile
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from labrelay import FRP_VERSION
from labrelay.config import (ConfigError, parse_client_config,
                             parse_server_config)
from labrelay.errors import ProtocolError
from labrelay.mux.frames import (FLAG_ACK, FLAG_FIN, FLAG_SYN, HEADER_SIZE,
                                 INITIAL_WINDOW, TYPE_DATA, TYPE_GO_AWAY,
                                 TYPE_PING, TYPE_WINDOW_UPDATE, FrameError,
                                 FrameParser, encode_header)
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.codec import PayloadCodec
from labrelay.protocol.compression import MAX_CHUNK
from labrelay.protocol.crypto import (IV_LENGTH, StreamDecryptor,
                                      StreamEncryptor, derive_key)
from labrelay.protocol.framing import (HEADER_LENGTH, MAX_BODY_LENGTH,
                                       V2_MAGIC, MessageParser, decode_body,
                                       encode_message)
from labrelay.server import service as server_service
from labrelay.server.connection import MAX_EARLY_WORK_BYTES, ServerConnection
from labrelay.server.bind_port import FrpConnectionFactory
from labrelay.server.service import RelayServer
from labrelay.throttle import PasswordThrottle
from labrelay.server.vhost import MAX_HEAD, Vhost
from labrelay.tracking import ConnectionSet

from . import vectors

#: The captures' token: their Login and NewWorkConn keys are valid with it.
TOKEN = "labrelay-vector-token"
#: The run_id every captured NewWorkConn is rewritten to, and the one the
#: server hands out while a driver runs.
RUN_ID = "f0f0f0f0f0f0f0f0"
#: Largest input the mutator builds.
MAX_INPUT = 64 * 1024
#: Bytes a session may write to a transport that stopped reading (a peer
#: that sends but never reads) beyond what it owed before the pause.
PAUSED_WRITE_ALLOWANCE = 4096

_TYPES = sorted(messages.MESSAGE_TYPES)


class BoundExceeded(AssertionError):
    """A buffer or memory bound was broken (a failure, like a crash)."""


def bound(condition: bool, what: str) -> None:
    """Raise :class:`BoundExceeded` saying *what* unless *condition*."""
    if not condition:
        raise BoundExceeded(what)


def chunked(data: bytes, cuts) -> list:
    """*data* cut at the positions *cuts* (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
#: input echoed in an error: template constructs, a (cut) value at the end
_ECHOED = re.compile(r"\{\{.*?(?:\}\}|$)|(?<=: )b?['\"\[{(].*$")


def normalise(text: str, width: int = 70) -> str:
    """The first line of *text* with quoted values and numbers blanked, so
    that alike errors count once."""
    text = _QUOTED.sub("_", text.split("\n")[0])
    text = _ECHOED.sub("_", text)
    return re.sub(r"0x[0-9a-fA-F]+|[0-9]+", "N", text)[:width]


def label(error: BaseException) -> str:
    """An outcome label for an expected error: its type and message."""
    return f"{type(error).__name__}: {normalise(str(error))}"


# -- mutation ----------------------------------------------------------------

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x22, 0x3A, 0x7B)
_INTEGERS = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
             0xFFFFFFFF, 2 ** 63 - 1, 2 ** 64 - 1, MAX_BODY_LENGTH,
             MAX_BODY_LENGTH + 1, INITIAL_WINDOW, INITIAL_WINDOW + 1)


def _random_bytes(rng, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def mutate(data: bytes, rng, corpus, tokens=()) -> bytes:
    """Apply one to four random edits (bit flips, interesting values,
    inserts, deletes, repeats, splices with another corpus entry, dictionary
    tokens) to *data*; *rng* is a ``random.Random`` or a hypothesis one."""
    out = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(10)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[rng.randrange(len(out))] = rng.choice(_INTERESTING)
        elif op == 2:
            out[pos:pos] = _random_bytes(rng, 1 + rng.randrange(16))
        elif op == 3 and out:
            end = min(len(out), pos + 1 + rng.randrange(64))
            del out[pos:end]
        elif op == 4 and out:
            start = rng.randrange(len(out))
            piece = out[start:start + 1 + rng.randrange(256)]
            out[pos:pos] = piece
        elif op == 5 and out:
            start = rng.randrange(len(out))
            piece = bytes(out[start:start + 1 + rng.randrange(48)])
            count = 2 + rng.randrange(1000)
            out[pos:pos] = piece * min(count, MAX_INPUT // len(piece))
        elif op == 6 and corpus:
            other = rng.choice(corpus)
            out = out[:pos] + other[rng.randrange(len(other) + 1):]
        elif op == 7:
            del out[pos:]
        elif op == 8 and out:
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(_INTEGERS) & ((1 << (8 * width)) - 1)
            at = rng.randrange(len(out))
            out[at:at + width] = value.to_bytes(width, "big")
        elif op == 9 and tokens:
            # a dictionary token, now and then repeated (floods)
            count = 1 if rng.randrange(4) else 1 + rng.randrange(500)
            token = rng.choice(tokens)
            out[pos:pos] = token * min(count, MAX_INPUT // len(token))
    return bytes(out[:MAX_INPUT])


# -- memory transports -------------------------------------------------------

class Wire(StringTransport):
    """
    A lenient StringTransport (a real TCP transport also accepts pause and
    resume after a close) that records an abort and a shut write half, and
    can model a peer that stops reading: after *pause_after* written bytes
    it pauses its registered producer and counts what is written anyway.
    """

    def __init__(self, port: int = 40000, pause_after=None):
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7000),
            peerAddress=IPv4Address("TCP", "203.0.113.7", port),
            lenient=True)
        self.aborted = False
        self.write_closed = False
        self.lost = False
        self._pause_after = pause_after
        self.written = 0
        self.written_while_paused = None

    def write(self, data):
        super().write(data)
        self._wrote(len(data))

    def writeSequence(self, seq):
        data = b"".join(seq)
        super().write(data)
        self._wrote(len(data))

    def _wrote(self, n: int) -> None:
        self.written += n
        if self.written_while_paused is not None:
            self.written_while_paused += n
        elif self._pause_after is not None and self.written > self._pause_after \
                and self.producer is not None:
            self.written_while_paused = 0
            self.producer.pauseProducing()

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()

    def loseWriteConnection(self):
        self.write_closed = True

    @property
    def reading(self) -> bool:
        """Whether a reactor would still deliver the peer's bytes: not after
        an abort or a full close (``loseConnection`` stops reading), nor
        while the protocol paused this transport."""
        return not self.aborted and not self.disconnecting and \
            self.producerState != "paused"


def lose(protocol, wire: Wire) -> None:
    """What a reactor does once a transport is gone: ``connectionLost``."""
    if not wire.lost:
        wire.lost = True
        protocol.connectionLost(Failure(ConnectionDone()))


# -- the targets -------------------------------------------------------------

class Target:
    """One decoder under test: a name, a corpus, tokens and a driver."""

    name = ""
    tokens = ()

    def corpus(self) -> list:
        """Valid inputs to mutate (built once, from tests/data)."""
        raise NotImplementedError

    def run(self, data: bytes, cuts) -> str:
        """Feed *data* cut at *cuts*; return an outcome label."""
        raise NotImplementedError


def _frame(type_byte: bytes, body: bytes) -> bytes:
    return type_byte + len(body).to_bytes(8, "big") + body


def _captured_messages():
    """(direction, type byte, raw JSON, encrypted) of every captured frame."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for direction in vectors.DIRECTIONS:
                side = node.get(direction)
                if isinstance(side, dict) and "messages" in side:
                    for m in side["messages"]:
                        found.append((direction, m["type"].encode(),
                                      m["raw_json"].encode("utf-8"),
                                      bool(m.get("encrypted"))))
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for scenario in vectors.SCENARIOS:
        walk(vectors.messages_json(scenario)["connections"])
    return found


def _captured_run_ids() -> set:
    return {m[2].split(b'"run_id":"')[1][:16] for m in _captured_messages()
            if b'"run_id":"' in m[2]}


def _with_run_id(data: bytes) -> bytes:
    """*data* with every captured run_id replaced by :data:`RUN_ID`."""
    for run_id in _captured_run_ids():
        data = data.replace(run_id, RUN_ID.encode())
    return data


def _c2s_streams(scenario: str) -> list:
    index = vectors.messages_json(scenario)
    return [vectors.stream_bytes(scenario, c["id"], "c2s")
            for c in index["connections"]]


class FramingTarget(Target):
    """MessageParser: frames in, messages or ProtocolError out."""

    name = "framing"
    tokens = tuple(_TYPES) + (V2_MAGIC, b"\x00" * 8, b"{}", b'{"a":')

    def corpus(self):
        frames = [_frame(t, body) for _, t, body, _ in _captured_messages()]
        return frames + [b"".join(frames[:6]), V2_MAGIC] + [
            s for sc in (vectors.PLAIN_NOMUX, vectors.LOGIN_BAD_TOKEN)
            for s in _c2s_streams(sc)]

    def run(self, data, cuts):
        parser = MessageParser()
        names = set()
        try:
            for piece in chunked(data, cuts):
                parser.feed(piece)
                names.update(m.name for m in parser.messages())
                bound(parser.buffered < HEADER_LENGTH + MAX_BODY_LENGTH,
                      f"parser holds {parser.buffered} undecoded bytes")
        except ProtocolError as e:
            return label(e)
        return "ok: " + ",".join(sorted(names))


class MessagesTarget(Target):
    """decode_body / message_from_json: the first byte picks the type, the
    rest is the JSON body; a decoded message re-encodes to itself."""

    name = "messages"
    tokens = (b"null", b"true", b"1e400", b"-1", b"[]", b"{}", b'"\\ud800"',
              b'"Version":', b'"client_spec":', b"9223372036854775808")

    def corpus(self):
        return [bytes([_TYPES.index(t)]) + body
                for _, t, body, _ in _captured_messages()]

    def run(self, data, cuts):
        if not data:
            return "empty"
        type_byte = _TYPES[data[0] % len(_TYPES)]
        try:
            message = decode_body(type_byte, data[1:])
        except ProtocolError as e:
            return label(e)
        try:
            wire = encode_message(message)
        except ProtocolError:
            return f"{message.name}: re-encoded over the length limit"
        try:
            again = decode_body(type_byte, wire[HEADER_LENGTH:])
        except ProtocolError as e:
            raise AssertionError(
                f"{message!r} re-encodes to {wire!r}, which fails: {e}")
        if again != message:
            raise AssertionError(f"{message!r} re-decodes as {again!r}")
        return f"{message.name}: round trip"


class CodecTarget(Target):
    """PayloadCodec.decode of arbitrary bytes; the first byte's two low bits
    pick use_encryption and use_compression."""

    name = "codec"
    tokens = (b"\xff\x06\x00\x00sNaPpY", b"\x00", b"\x01", b"\xfe", b"\x80")

    def corpus(self):
        out = []
        for flags in range(4):
            writer = PayloadCodec(TOKEN, bool(flags & 1), bool(flags & 2))
            wire = b"".join(writer.encode(w) for w in (
                vectors.HELLO, vectors.PATTERN, b"x" * 70000))
            out += [bytes([flags]) + wire[:3000], bytes([flags]) + wire]
        return out

    def run(self, data, cuts):
        if not data:
            return "empty"
        encrypted, compressed = bool(data[0] & 1), bool(data[0] & 2)
        codec = PayloadCodec(TOKEN, encrypted, compressed)
        total_in = total_out = 0
        try:
            for piece in chunked(data[1:], cuts):
                total_in += len(piece)
                total_out += len(codec.decode(piece))
                reader = codec._reader
                held = reader._decompressor.remains if reader else None
                bound(held is None or len(held) <= MAX_CHUNK + 10,
                      f"snappy reader holds {len(held or b'')} bytes")
                # snappy expands at most ~21x; one chunk yields <= 64 KiB
                bound(total_out <= 24 * total_in + 65536,
                      f"{total_in} bytes in decoded to {total_out} out")
        except ProtocolError as e:
            return f"flags={data[0] & 3} {label(e)}"
        if not compressed:
            expected = total_in - IV_LENGTH if encrypted else total_in
            bound(total_out == max(expected, 0), "CFB changed the length")
        return f"flags={data[0] & 3} ok"


def _yamux_corpus(direction: str) -> list:
    capture = vectors.stream_bytes(vectors.PLAIN_MUX, "conn-01", direction)
    login = encode_message(messages.Login(version=FRP_VERSION))
    handmade = b"".join([
        encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
        encode_header(TYPE_DATA, 0, 1, len(login)), login,
        encode_header(TYPE_PING, FLAG_SYN, 0, 7),
        encode_header(TYPE_DATA, FLAG_FIN, 1, 0),
        encode_header(TYPE_GO_AWAY, 0, 0, 0)])
    return [capture, capture[:600], handmade]


_YAMUX_TOKENS = tuple(encode_header(t, f, s, n) for t, f, s, n in (
    (TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0), (TYPE_WINDOW_UPDATE, FLAG_SYN, 3,
                                           0xFFFFFFFF),
    (TYPE_DATA, 0, 1, 8), (TYPE_DATA, FLAG_FIN, 1, 0), (TYPE_PING, FLAG_SYN,
                                                        0, 1),
    (TYPE_PING, FLAG_ACK, 0, 1), (TYPE_GO_AWAY, 0, 0, 1),
    (TYPE_WINDOW_UPDATE, 0x8, 1, 0), (TYPE_DATA, 0, 2, INITIAL_WINDOW + 1)))


class YamuxFramesTarget(Target):
    """FrameParser: only FrameError, and never more than one frame held."""

    name = "yamux-frames"
    tokens = _YAMUX_TOKENS

    def corpus(self):
        return _yamux_corpus("c2s") + _yamux_corpus("s2c")

    def run(self, data, cuts):
        parser = FrameParser(max_data_length=INITIAL_WINDOW)
        count = 0
        try:
            for piece in chunked(data, cuts):
                count += len(parser.feed(piece))
                bound(parser.buffered < HEADER_SIZE + INITIAL_WINDOW,
                      f"frame parser holds {parser.buffered} bytes")
        except FrameError as e:
            return label(e)
        return "ok, partial frame" if parser.buffered else "ok"


class Echo(Protocol):
    """A stream protocol that echoes with backpressure: the stream is its
    own producer, so a full send buffer stops delivery (and credit)."""

    def connectionMade(self):
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data):
        self.transport.write(data)


class YamuxSessionTarget(Target):
    """
    A server-side YamuxSession whose streams echo, on a memory transport
    and a Clock.  Input bit 0 of the first byte makes the peer stop reading
    after 256 bytes (the transport pauses the session); in strict mode the
    session must then write at most :data:`PAUSED_WRITE_ALLOWANCE` more.
    """

    name = "yamux-session"
    tokens = _YAMUX_TOKENS

    def __init__(self, strict_paused_writes: bool = True):
        self.strict_paused_writes = strict_paused_writes

    def corpus(self):
        return [bytes([mode]) + c for c in _yamux_corpus("c2s")
                for mode in (0, 1)]

    def run(self, data, cuts):
        if not data:
            return "empty"
        window = INITIAL_WINDOW
        clock = Clock()
        session = YamuxSession(is_client=False, clock=clock,
                               accept_stream=lambda stream: Echo(),
                               max_window=window, accept_backlog=8)
        wire = Wire(pause_after=256 if data[0] & 1 else None)
        session.makeConnection(wire)
        closed = []
        session.when_closed().addCallback(closed.append)
        for piece in chunked(data[1:], cuts):
            if wire.disconnecting:
                break
            session.dataReceived(piece)
            clock.advance(3)
            held = session._parser.buffered
            bound(held < HEADER_SIZE + window,
                  f"session parser holds {held} bytes")
            for stream in list(session._streams.values()):
                bound(stream.receive_buffered <= window,
                      f"stream {stream.stream_id} holds "
                      f"{stream.receive_buffered} received bytes")
                bound(stream.send_buffered <= window,
                      f"stream {stream.stream_id} holds "
                      f"{stream.send_buffered} bytes to send")
            paused = wire.written_while_paused
            bound(not self.strict_paused_writes or paused is None
                  or paused <= PAUSED_WRITE_ALLOWANCE,
                  f"session wrote {paused} bytes to a transport whose "
                  f"peer does not read")
        state = ("closed: " + label(closed[0])) if closed else \
            f"open, {min(session.streams_open, 3)}+ streams"
        session.connectionLost(Failure(ConnectionDone()))
        bound(clock.getDelayedCalls() == [],
              f"delayed calls left: {clock.getDelayedCalls()}")
        return state


class ConfigTarget(Target):
    """parse_server_config and parse_client_config: only ConfigError."""

    name = "config"
    tokens = (b"\n[common]\n", b"\n[x]\n", b" = ", b"{{ .Envs.X }}", b"{{",
              b'"""', b"\\\n", b"range:", b"-", b",", b"type = http\n",
              b"remote_port = ", b"true", b"0x1f", b"\n#", b"[", b"]")

    def __init__(self):
        self._base = None

    def corpus(self):
        found = []
        for path in (FilePath(__file__).sibling("data").globChildren("*") +
                     [FilePath(__file__).parent().parent().child("conf")]):
            for ini in path.globChildren("*.ini"):
                found.append(ini.getContent())
        return found

    def run(self, data, cuts):
        # no file system: includes would read whatever a pattern names
        text = data.decode("utf-8", "replace").replace("includes", "include_s")
        if self._base is None:
            self._base = tempfile.mkdtemp(prefix="labrelay-fuzz-config-")
        outcomes = []
        for parse, kwargs in ((parse_server_config, {}),
                              (parse_client_config, {"base_dir": self._base})):
            try:
                parse(text, environ={"X": "1"}, **kwargs)
                outcomes.append("ok")
            except ConfigError as e:
                bound("\n" not in str(e), f"multi-line ConfigError {e!r}")
                outcomes.append(label(e))
        return " | ".join(outcomes)


# -- the HTTP vhost ----------------------------------------------------------

class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeWork:
    """A pooled work connection on a Wire; answers each request once."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.transport = Wire(port=50000)
        self.sent = []
        self.alive = True
        self.sink = None
        self.answered = False

    def send(self, message):
        self.sent.append(message)

    def take_early_data(self):
        return b""


_STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")


def parse_responses(data: bytes, closed: bool) -> list:
    """The status codes of the HTTP/1.1 responses in *data*, which must hold
    nothing else (a last response may be cut if the connection closed)."""
    statuses = []
    while data:
        match = _STATUS.match(data)
        if match is None:
            raise AssertionError(f"not an HTTP response: {data[:80]!r}")
        end = data.find(b"\r\n\r\n")
        if end == -1:
            raise AssertionError(f"response head cut: {data[:80]!r}")
        head, data = data[:end], data[end + 4:]
        lengths = re.findall(rb"\r\ncontent-length: *([0-9]+)", head.lower())
        if len(lengths) != 1:
            raise AssertionError(f"no single Content-Length in {head!r}")
        length = int(lengths[0])
        statuses.append(int(match.group(1)))
        if data.startswith(b"HTTP/1.1 ") or not data:
            continue  # a HEAD response, or a last one without body
        if len(data) < length and not closed:
            raise AssertionError(f"body cut on an open connection: {data!r}")
        data = data[length:]
    return statuses


_REQUESTS = (
    b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: nowhere.example.test\r\n\r\n"
    b"HEAD / HTTP/1.1\r\nHost: nowhere.example.test:80\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"Content-Length: 11\r\n\r\nhello world",
    b"POST / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://secret.example.test/ HTTP/1.1\r\nHost: x\r\n"
    b"Proxy-Authorization: Basic dTpw\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: secret.example.test\r\n"
    b"Authorization: Basic dTpw\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: jupyter.web.example.test\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n",
)


class VhostTarget(Target):
    """
    One vhost user connection (VhostConnection over a Wire, a Clock, a stub
    server with two http proxies whose work connections answer 200): the
    user gets well-formed HTTP responses or a close, never an exception,
    and the connection holds at most one request head.
    """

    name = "vhost"
    tokens = (b"\r\n", b"\r\n\r\n", b"Host: ", b"Content-Length: ",
              b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n",
              b"Upgrade: websocket\r\n", b"Expect: 100-continue\r\n",
              b"HTTP/1.1", b" ", b":", b"GET ", b"CONNECT ", b"0\r\n\r\n")

    def corpus(self):
        captured = json.loads(vectors.read_bytes(
            vectors.PLAIN_NOMUX, "user_side.json"))["user_connections"]
        return list(_REQUESTS) + [b"".join(_REQUESTS[:3]),
                                  captured["jupyter"]["request"].encode()]

    def _world(self):
        clock = Clock()
        config = parse_server_config(
            "[common]\nvhost_http_port = 80\n"
            "subdomain_host = web.example.test\ntoken = t\n")
        server = _Stub(config=config, clock=clock,
                       connections=ConnectionSet(),
                       throttle=PasswordThrottle(clock),
                       log_auth_failure=lambda *args: None)
        vhost = Vhost(server)
        works = []

        def get():
            works.append(FakeWork())
            return defer.succeed(works[-1])

        control = _Stub(login=_Stub(pool_count=1), closed=False,
                        pool=_Stub(get=get))
        for fields in ({"proxy_name": "jupyter", "subdomain": "jupyter"},
                       {"proxy_name": "secret", "http_user": "u",
                        "http_pwd": "p",
                        "custom_domains": ["secret.example.test"]}):
            vhost.create_proxy(control, messages.NewProxy(
                proxy_type="http", **fields)).start()
        return clock, vhost, works

    def _serve(self, works):
        """The reactor's and the backends' part: answer new requests,
        deliver connectionLost to closed work connections."""
        for work in works:
            if work.sink is None:
                continue
            if not work.answered and work.transport.value() \
                    and not work.transport.disconnecting:
                work.answered = True
                work.sink.forward(work, FakeWork.RESPONSE)
            if work.transport.disconnecting and not work.transport.lost:
                work.transport.lost = True
                work.sink.connection_lost(work, Failure(ConnectionDone()))

    def run(self, data, cuts):
        clock, vhost, works = self._world()
        user = Wire()
        connection = vhost.factory.buildProtocol(None)
        connection.makeConnection(user)
        for piece in chunked(data, cuts):
            self._serve(works)
            if not user.reading:
                break
            connection.dataReceived(piece)
            held = len(connection.http.trailing_data[0])
            bound(held <= MAX_HEAD + len(piece),
                  f"vhost connection holds {held} bytes of request")
        self._serve(works)
        if user.reading and len(data) % 2:
            connection.readConnectionLost()  # the user shuts its write half
        for _ in range(4):  # head, response and linger timeouts
            clock.advance(vhost.response_timeout + vhost.head_timeout + 1)
            self._serve(works)
        closed = user.disconnecting or user.write_closed
        statuses = parse_responses(user.value(), closed)
        lose(connection, user)
        self._serve(works)
        bound(clock.getDelayedCalls() == [],
              f"delayed calls left: {clock.getDelayedCalls()}")
        bound(not vhost.connections, "a closed connection is still tracked")
        shown = ",".join(str(s) for s in sorted(set(statuses)))
        return f"{shown or 'no response'}; {'closed' if closed else 'open'}"


# -- the server's bind port --------------------------------------------------

def _server_config(mux: bool):
    return parse_server_config(
        f"[common]\nbind_port = 7000\ntoken = {TOKEN}\n"
        f"tcp_mux = {str(mux).lower()}\nvhost_http_port = 8080\n"
        "subdomain_host = web.example.test\n", source="frps.ini")


_CONFIGS = {}


def login_frame(run_id: str = RUN_ID) -> bytes:
    """A Login with a valid privilege key for :data:`TOKEN`."""
    now = int(time.time())
    return encode_message(messages.Login(
        version=FRP_VERSION, privilege_key=privilege_key(TOKEN, now),
        timestamp=now, run_id=run_id, pool_count=1))


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
        bound(stopped == [None] or stopped and not isinstance(
            stopped[0], Failure), f"stopService: {stopped}")
        bound(self.reactor.getDelayedCalls() == [],
              f"delayed calls left: {self.reactor.getDelayedCalls()}")


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
            bound(held <= MAX_EARLY_WORK_BYTES + piece,
                  f"work connection holds {held} early bytes")
            return
        held = connection._parser.buffered
        # a refused first message may be answered later: input is ignored
        stopped = wire.disconnecting or getattr(connection, "_ignoring", False)
        if not stopped:
            bound(held < HEADER_LENGTH + MAX_BODY_LENGTH,
                  f"connection parser holds {held} undecoded bytes")
        elif self._at_close is None:
            self._at_close = held
            bound(held < HEADER_LENGTH + MAX_BODY_LENGTH + piece,
                  f"closing connection holds {held} undecoded bytes")
        else:
            bound(held <= self._at_close,
                  f"stopped connection keeps buffering input: {held} bytes")


def server_output(raw: bytes) -> list:
    """The names of the messages a server wrote on one frp connection
    (decrypting after a LoginResp); raises unless they are well-formed."""
    if raw[:1] == b"\x00":  # the tcp_mux mismatch answer: yamux frames
        frames = FrameParser().feed(raw)
        bound(sum(HEADER_SIZE + len(f.payload) for f in frames) == len(raw),
              f"a cut yamux refusal: {raw!r}")
        return ["yamux refusal"]
    parser = MessageParser()
    parser.feed(raw)
    names = []
    for message in parser.messages():
        names.append(message.name + ("(error)" if getattr(
            message, "error", "") else ""))
        if isinstance(message, messages.LoginResp) and not message.error:
            rest = parser.take_rest()
            parser.feed(StreamDecryptor(derive_key(TOKEN)).decrypt(rest))
    return names


def _state(wire: Wire) -> str:
    return "aborted" if wire.aborted else \
        "closed" if wire.disconnecting else "open"


class ServerPlainTarget(Target):
    """
    The first bytes of a plain (tcp_mux = false) connection to the bind
    port, with a client already logged in as :data:`RUN_ID`: closed or
    waiting, never an exception, bounded buffers.  After a close that is
    not an abort the bytes keep coming, as they do over TLS, whose peer
    may ignore our close_notify.
    """

    name = "server-plain"
    tokens = (login_frame(), V2_MAGIC, b"\x16\x03\x01", b"\x00\x00\x00\x01",
              _frame(b"v", b'{"proxy_name":"x"}'), _frame(b"h", b"{}"))

    def corpus(self):
        streams = [_with_run_id(s) for sc in
                   (vectors.PLAIN_NOMUX, vectors.LOGIN_BAD_TOKEN)
                   for s in _c2s_streams(sc)]
        return streams + [login_frame(), _frame(b"v", b'{"proxy_name":"x"}')]

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
    tokens = tuple(_frame(t, b"{}") for t in _TYPES) + (
        _frame(b"p", b'{"proxy_name":"a","proxy_type":"http",'
                     b'"subdomain":"a"}'),
        _frame(b"p", b'{"proxy_name":"t","remote_port":65536}'))

    def corpus(self):
        plain = [_frame(t, body) for d, t, body, enc in _captured_messages()
                 if d == "c2s" and enc]
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
    tokens = _YAMUX_TOKENS + (login_frame(),)

    def corpus(self):
        return [_with_run_id(c) for c in _yamux_corpus("c2s")]

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
                bound(session._parser.buffered < HEADER_SIZE + window,
                      f"session parser holds {session._parser.buffered}")
                for stream in list(session._streams.values()):
                    bound(stream.receive_buffered <= window,
                          f"stream {stream.stream_id} holds "
                          f"{stream.receive_buffered} received bytes")
                    if isinstance(stream.protocol, ServerConnection) and \
                            stream.protocol.work_owner is None:
                        held = stream.protocol._parser.buffered
                        bound(held < HEADER_LENGTH + MAX_BODY_LENGTH,
                              f"stream {stream.stream_id} holds {held} "
                              f"undecoded bytes")
            state = f"{_state(wire)}, {min(session.streams_open, 3)} streams"
            if closed:
                state += "; " + label(closed[0])
            world.finish()
        return state


TARGETS = {t.name: t for t in (
    FramingTarget(), MessagesTarget(), ControlTarget(), CodecTarget(),
    YamuxFramesTarget(), YamuxSessionTarget(), ConfigTarget(), VhostTarget(),
    ServerPlainTarget(), ServerMuxTarget())}


# -- hypothesis --------------------------------------------------------------

_CORPORA = {}


def corpus_of(target: Target) -> list:
    """The target's corpus, built once."""
    if target.name not in _CORPORA:
        _CORPORA[target.name] = target.corpus()
    return _CORPORA[target.name]


def inputs(target: Target, max_random: int = 2000):
    """(data, cuts): random bytes, or a corpus entry mutated."""
    corpus = corpus_of(target)
    mutated = st.builds(
        lambda seed, rng: mutate(seed, rng, corpus, target.tokens),
        st.sampled_from(corpus), st.randoms(use_true_random=False))
    data = st.one_of(st.binary(max_size=max_random), st.sampled_from(corpus),
                     mutated)
    return st.tuples(data, st.lists(st.integers(0, MAX_INPUT), max_size=8))


def _property(target: Target, doc: str, examples: int = 250):
    """A test method running *target* on hypothesis inputs."""
    @settings(max_examples=examples, deadline=None)
    @given(inputs(target))
    def test(self, sample):
        target.run(*sample)
    test.__doc__ = doc
    return test


class DecoderProperties(SynchronousTestCase):
    """The sans-IO decoders on random and mutated captured input."""

    test_framing = _property(
        TARGETS["framing"],
        "MessageParser raises only ProtocolError and holds less than one "
        "maximal frame.")

    test_messages = _property(
        TARGETS["messages"],
        "A JSON body decodes to a message that re-encodes to itself, or "
        "raises ProtocolError.")

    test_codec = _property(
        TARGETS["codec"],
        "PayloadCodec.decode of any bytes raises only ProtocolError and "
        "holds at most one snappy chunk.")

    test_yamux_frames = _property(
        TARGETS["yamux-frames"],
        "FrameParser raises only FrameError and holds less than one "
        "maximal frame.")

    test_config = _property(
        TARGETS["config"],
        "Mutated frps.ini/frpc.ini texts parse or raise a one-line "
        "ConfigError.",
        200)

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(_TYPES), st.dictionaries(
        st.sampled_from(["version", "Run_ID", "privilege_key", "timestamp",
                         "pool_count", "metas", "client_spec", "proxy_name",
                         "remote_port", "custom_domains", "src_port", "l",
                         "error", "use_encryption", "x"]),
        st.recursive(st.none() | st.booleans() | st.integers() |
                     st.floats(allow_nan=False, allow_infinity=False) |
                     st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=4), inner, max_size=3),
                     max_leaves=8), max_size=6))
    def test_message_from_json(self, type_byte, value):
        """message_from_json of any JSON object gives a message or raises
        ProtocolError."""
        try:
            message = messages.message_from_json(type_byte, value)
        except ProtocolError:
            return
        self.assertEqual(message.type_byte, type_byte)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
    def test_decryptor_any_bytes(self, data, cuts):
        """StreamDecryptor takes any bytes in any pieces and returns all but
        the IV, holding at most one partial IV."""
        decryptor = StreamDecryptor(derive_key(TOKEN))
        out = b"".join(decryptor.decrypt(p) for p in chunked(data, cuts))
        self.assertEqual(len(out), max(len(data) - IV_LENGTH, 0))
        self.assertLess(len(decryptor._iv), IV_LENGTH)


class ProtocolProperties(SynchronousTestCase):
    """Whole protocols on memory transports, fed random and mutated input."""

    test_yamux_session = _property(
        YamuxSessionTarget(strict_paused_writes=False),
        "A yamux session never raises, keeps every buffer within a window "
        "and leaves no timer once lost.",
        200)

    test_vhost = _property(
        TARGETS["vhost"],
        "A vhost connection answers well-formed HTTP responses or closes, "
        "holds at most one head and leaves no timer.",
        200)

    test_server_plain = _property(
        TARGETS["server-plain"],
        "Any first bytes on the bind port leave the connection closed or "
        "waiting, with bounded buffers and well-formed replies.",
        200)

    test_control = _property(
        TARGETS["control"],
        "Any plaintext on a logged-in control channel is handled or "
        "refused with a close, with bounded buffers.",
        200)

    test_server_mux = _property(
        TARGETS["server-mux"],
        "Any bytes on a tcp_mux bind-port connection end in a close or a "
        "waiting session, with bounded buffers and no timer left.",
        150)


class RegressionTests(SynchronousTestCase):
    """Fixed inputs for what the properties found."""

    def test_refused_connection_drops_further_input(self):
        """After refusing a visitor connection the server buffers nothing
        more of what the peer keeps sending (TLS delivers it)."""
        world = ServerWorld(mux=False)
        connection, wire = world.connect()
        connection.dataReceived(_frame(b"v", b'{"proxy_name":"x"}'))
        self.assertTrue(wire.disconnecting)
        for _ in range(20):
            connection.dataReceived(b"o" * 10000)
        self.assertEqual(connection._parser.buffered, 0)
        world.finish()

    def test_config_error_on_one_line(self):
        """A template string escaping a newline gives a one-line error."""
        with self.assertRaises(ConfigError) as caught:
            parse_server_config('[common]\nbind_port = {{ "\\\n" }}\n')
        self.assertNotIn("\n", str(caught.exception))
        self.assertIn("invalid escape", str(caught.exception))

    def test_paused_transport_bounds_writes(self):
        """A peer that floods Pings and never reads does not make the
        session write without bound."""
        target = YamuxSessionTarget(strict_paused_writes=True)
        ping = encode_header(TYPE_PING, FLAG_SYN, 0, 7)
        target.run(b"\x01" + ping * 1000, [])


    def test_non_finite_number_refused(self):
        """A JSON number beyond float64 is refused, as Go refuses it, rather
        than decoded to inf and re-encoded as invalid JSON."""
        target = MessagesTarget()
        target.run(bytes([_TYPES.index(b"u")]) + b'{"l": 1e400}', [])

