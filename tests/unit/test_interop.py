# -*- test-case-name: tests.unit.test_interop -*-
"""
Replays of the real frp 0.70 captures (tests/data) against labrelay.

The server tests feed what a real frpc sent (each capture's c2s bytes, in
the reads the recording relay saw) into labrelay's server and decode what it
answers.  The client tests feed what a real frps sent (s2c) into labrelay's
client and decode what it writes.  Everything runs in memory: a
MemoryReactorClock records listeners and dials, StringTransports stand in for
sockets, and :class:`Wires` delivers ``connectionLost`` after a close as a
reactor would.

The helpers here cut frp frames and yamux frames out of the written bytes
on their own, and compare what labrelay writes with the captured JSON bodies
byte for byte wherever frp's bytes are deterministic.
"""

import json
import platform
import struct
from collections import deque

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from labrelay import FRP_VERSION
from labrelay.client.service import RelayClient
from labrelay.config import parse_client_config, parse_server_config
from labrelay.protocol.auth import check_privilege_key
from labrelay.protocol.codec import PayloadCodec
from labrelay.protocol.crypto import StreamDecryptor, derive_key
from labrelay.protocol.framing import decode_body
from labrelay.server import service as server_service
from labrelay.server.service import RelayServer

from ..support.vectors import (
    HELLO,
    PATTERN,
    PLAIN_MUX,
    PLAIN_NOMUX,
    messages_json,
    read_bytes,
    stream_chunks,
)

TOKEN = "labrelay-vector-token"
KEY = derive_key(TOKEN)
PAYLOAD = HELLO + PATTERN

#: The window delta of labrelay's SYN and ACK frames.  frp grants its 6 MiB
#: maximum at once (6029312 beyond the initial 256 KiB); labrelay grants
#: nothing beyond the initial window until data has been passed on
#: (labrelay.mux.budget), which yamux peers, frp's included, accept.
OPEN_DELTA = 0
DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8

#: The snappy framing format's stream identifier chunk.
SNAPPY_STREAM_ID = bytes.fromhex("ff060000") + b"sNaPpY"

_FRP_HEADER = struct.Struct(">cq")
_YAMUX_HEADER = struct.Struct(">BBHII")


# -- decoding what labrelay wrote -------------------------------------------


def split_frames(data: bytes, limit: int = None):
    """
    Cut whole frp v1 frames off *data*: ``([(type_byte, body), ...], rest)``,
    at most *limit* frames.
    """
    frames = []
    while len(data) >= _FRP_HEADER.size and (limit is None or len(frames) < limit):
        type_byte, length = _FRP_HEADER.unpack_from(data)
        end = _FRP_HEADER.size + length
        if len(data) < end:
            break
        frames.append((type_byte, data[_FRP_HEADER.size : end]))
        data = data[end:]
    return frames, data


def decoded(frames):
    """The messages of raw frames."""
    return [decode_body(type_byte, body) for type_byte, body in frames]


def names(messages):
    return [message.name for message in messages]


class ControlReader:
    """
    One direction of a control stream as its peer reads it: a plaintext first
    frame (Login or LoginResp), then AES-128-CFB under the token's key, whose
    first 16 bytes are the writer's IV.  :meth:`feed` returns the raw frames
    completed so far.
    """

    def __init__(self):
        self._plain = b""
        self._decryptor = None

    def feed(self, data: bytes) -> list:
        frames = []
        if self._decryptor is None:
            self._plain += data
            frames, self._plain = split_frames(self._plain, limit=1)
            if not frames:
                return []
            data, self._plain = self._plain, b""
            self._decryptor = StreamDecryptor(KEY)
        self._plain += self._decryptor.decrypt(data)
        more, self._plain = split_frames(self._plain)
        return frames + more


def yamux_frames(data: bytes):
    """Every yamux frame of *data*: ``(type, flags, stream_id, length,
    payload)``; the bytes must end on a frame boundary."""
    frames = []
    while data:
        version, kind, flags, stream_id, length = _YAMUX_HEADER.unpack_from(data)
        assert version == 0, f"yamux version {version}"
        size = _YAMUX_HEADER.size + (length if kind == DATA else 0)
        assert len(data) >= size, "truncated yamux frame"
        frames.append((kind, flags, stream_id, length, data[_YAMUX_HEADER.size : size]))
        data = data[size:]
    return frames


class YamuxReader:
    """Splits what one side of a yamux session wrote into frame headers and
    per-stream Data payloads, incrementally."""

    def __init__(self, transport):
        self._transport = transport
        self.headers = []  # (type, flags, stream_id, length), all so far
        self.payload = {}  # stream_id -> bytes, all so far

    def read(self):
        """Take the transport's new bytes; return their frame headers."""
        frames = yamux_frames(self._transport.value())
        self._transport.clear()
        new = []
        for kind, flags, stream_id, length, payload in frames:
            new.append((kind, flags, stream_id, length))
            if kind == DATA:
                self.payload[stream_id] = self.payload.get(stream_id, b"") + payload
        self.headers += new
        return new

    def take(self, stream_id: int) -> bytes:
        """The Data bytes of *stream_id* not taken before."""
        self.read()
        return self.payload.pop(stream_id, b"")


def decode_payload(data: bytes) -> bytes:
    """Work-connection payload of an encrypted, compressed proxy."""
    return PayloadCodec(TOKEN, True, True).decode(data)


# -- captured facts ---------------------------------------------------------


def tcp_address(text: str) -> IPv4Address:
    host, port = text.rsplit(":", 1)
    return IPv4Address("TCP", host, int(port))


def documents_by_role(scenario: str) -> dict:
    """'control' and each work connection's proxy name -> its document
    (a TCP connection, or a yamux stream)."""
    found = {}
    for connection in messages_json(scenario)["connections"]:
        for doc in connection.get("streams", [connection]):
            key = doc.get("proxy_name") or doc["role"]
            found.setdefault(key, doc)
    return found


def captured(doc, direction, name):
    """The captured messages called *name* of one direction of *doc*."""
    return [m for m in doc[direction]["messages"] if m["name"] == name]


def message_end(doc, direction, name, index=0) -> int:
    """The offset just after a captured message in its direction's stream."""
    message = captured(doc, direction, name)[index]
    start = message.get("offset", message.get("wire_offset"))
    return start + message["frame_len"]


def yamux_frame_end(scenario, direction, stream_id, kind, index=0) -> int:
    """The offset just after the *index*-th frame of *kind* ('Data', or
    'WindowUpdate') on *stream_id* in a session's direction; -1 is the last."""
    session = messages_json(scenario)["connections"][0]
    frames = [
        f
        for f in session["yamux"][f"{direction}_frames"]
        if f["stream_id"] == stream_id and f["type"] == kind
    ]
    frame = frames[index]
    size = _YAMUX_HEADER.size + (frame["length"] if kind == "Data" else 0)
    return frame["offset"] + size


def payload_bytes(doc, direction) -> bytes:
    return bytes.fromhex(doc[direction]["payload"]["hex"])


# -- in-memory connections --------------------------------------------------


class Wires:
    """
    Protocols connected to StringTransports, plus the reactor's part that a
    StringTransport leaves out: after a close, deliver ``connectionLost``.
    """

    def __init__(self):
        self._pairs = []  # [protocol, transport, lost]

    def connect(self, protocol, host, peer) -> StringTransport:
        transport = StringTransport(hostAddress=host, peerAddress=peer)
        protocol.makeConnection(transport)
        self._pairs.append([protocol, transport, False])
        return transport

    def deliver_losses(self) -> None:
        progress = True
        while progress:
            progress = False
            for pair in list(self._pairs):
                protocol, transport, lost = pair
                if transport.disconnecting and not lost:
                    pair[2] = True
                    protocol.connectionLost(Failure(ConnectionDone()))
                    progress = True

    def close_all(self) -> None:
        for _protocol, transport, lost in self._pairs:
            if not lost:
                transport.loseConnection()
        self.deliver_losses()


class Replay:
    """
    One direction of a captured connection, fed to a protocol in the reads
    the recording relay saw; :meth:`feed_to` stops at a byte offset,
    splitting a read there.
    """

    def __init__(self, scenario, conn_id, direction, after_each=None):
        self._chunks = deque(stream_chunks(scenario, conn_id, direction))
        self._after_each = after_each
        self.offset = 0

    def feed_to(self, protocol, end=None) -> None:
        while self._chunks and (end is None or self.offset < end):
            chunk = self._chunks.popleft()
            if end is not None and self.offset + len(chunk) > end:
                cut = end - self.offset
                chunk, rest = chunk[:cut], chunk[cut:]
                self._chunks.appendleft(rest)
            self.offset += len(chunk)
            protocol.dataReceived(chunk)
            if self._after_each is not None:
                self._after_each()

    def feed_reads(self, protocol, count: int) -> None:
        """Feed the next *count* recorded reads."""
        for _ in range(count):
            chunk = self._chunks.popleft()
            self.offset += len(chunk)
            protocol.dataReceived(chunk)
            if self._after_each is not None:
                self._after_each()


# -- real frpc -> labrelay server ---------------------------------------------


class _ServerReplayMixin:
    """A labrelay server configured with a capture's frps.ini."""

    scenario = None
    #: False: drop vhost_http_port from frps.ini (no HTTP vhost).
    vhost = True

    def setUp(self):
        self.docs = documents_by_role(self.scenario)
        self.index = json.loads(read_bytes(self.scenario, "index.json"))
        self.run_id = json.loads(
            captured(self.docs["control"], "s2c", "LoginResp")[0]["raw_json"]
        )["run_id"]
        # frps picked this run_id; the captured NewWorkConns carry it.
        self.patch(server_service, "new_run_id", lambda: self.run_id)
        self.reactor = MemoryReactorClock()
        self.wires = Wires()
        text = read_bytes(self.scenario, "frps.ini").decode("utf-8")
        if not self.vhost:
            text = "".join(
                line
                for line in text.splitlines(True)
                if not line.startswith("vhost_http_port")
            )
        config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(config, self.reactor, None)
        self.server.startService()
        self.addCleanup(self._stop)
        self.bind_factory, interface = self.listening_ports()[27000]
        self.assertEqual(interface, "127.0.0.1")

    def _stop(self):
        stopped = self.server.stopService()
        self.wires.close_all()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def accept(self, client_peer: str):
        """A connection from frpc accepted on the bind port."""
        protocol = self.bind_factory.buildProtocol(tcp_address(client_peer))
        transport = self.wires.connect(
            protocol, IPv4Address("TCP", "127.0.0.1", 27000), tcp_address(client_peer)
        )
        return protocol, transport

    def listening_ports(self) -> dict:
        return {
            port: (factory, interface)
            for port, factory, _, interface in self.reactor.tcpServers
        }

    def user_connects(self, port: int, src_port: int):
        """A user connecting from 127.0.0.1:*src_port* to a proxy's port."""
        factory, _ = self.listening_ports()[port]
        peer = IPv4Address("TCP", "127.0.0.1", src_port)
        protocol = factory.buildProtocol(peer)
        transport = self.wires.connect(
            protocol, IPv4Address("TCP", "127.0.0.1", port), peer
        )
        return protocol, transport

    def captured_start(self, proxy_name):
        """The StartWorkConn frps sent for the captured user of a proxy."""
        [start] = captured(self.docs[proxy_name], "s2c", "StartWorkConn")
        return start["raw_json"].encode("utf-8"), start["body"]

    def check_login_answer(self, messages, frames, with_pong):
        """The server's control replies to the captured Login and NewProxys."""
        expected = ["LoginResp", "ReqWorkConn"] + ["NewProxyResp"] * 3
        self.assertEqual(names(messages), expected + ["Pong"] * with_pong)
        login_resp = messages[0]
        self.assertEqual(
            (login_resp.version, login_resp.run_id, login_resp.error),
            (FRP_VERSION, self.run_id, ""),
        )
        [captured_resp] = captured(self.docs["control"], "s2c", "LoginResp")
        self.assertEqual(list(json.loads(frames[0][1])), list(captured_resp["body"]))
        responses = {
            m.proxy_name: (m, body)
            for m, (_, body) in zip(messages, frames)
            if m.name == "NewProxyResp"
        }
        wanted = {
            m["body"]["proxy_name"]: m["raw_json"].encode()
            for m in captured(self.docs["control"], "s2c", "NewProxyResp")
        }
        for name, remote_addr in (("ssh", ":27022"), ("ssh-enc", ":27023")):
            message, body = responses[name]
            self.assertEqual((message.remote_addr, message.error), (remote_addr, ""))
            self.assertEqual(body, wanted[name])
        jupyter, body = responses["jupyter"]
        ports = self.listening_ports()
        if not self.vhost:
            # Without an HTTP vhost the http proxy is refused, saying why.
            self.assertEqual(jupyter.remote_addr, "")
            self.assertIn("vhost_http_port", jupyter.error)
            self.assertEqual(sorted(ports), [27000, 27022, 27023])
        else:
            self.assertEqual(body, wanted["jupyter"])
            self.assertEqual(sorted(ports), [27000, 27022, 27023, 27080])
        if with_pong:
            self.assertEqual(frames[-1], (b"4", b"{}"))
        self.assertEqual(ports[27022][1], "127.0.0.1")
        self.assertEqual(ports[27023][1], "127.0.0.1")


class RealFrpcToServerTests(_ServerReplayMixin, SynchronousTestCase):
    """plain-nomux: every control or work connection is a TCP connection."""

    scenario = PLAIN_NOMUX

    def connection_id(self, key):
        wanted = self.docs[key]["id"]
        [entry] = [c for c in self.index["connections"] if c["id"] == wanted]
        return entry["id"], entry["client_peer"]

    def login(self):
        """Replay the control connection; return its reader and transport."""
        conn_id, peer = self.connection_id("control")
        protocol, transport = self.accept(peer)
        Replay(self.scenario, conn_id, "c2s").feed_to(protocol)
        reader = ControlReader()
        frames = reader.feed(transport.value())
        transport.clear()
        return reader, transport, frames

    def work_connection(self, proxy_name):
        """Replay a work connection up to the end of its NewWorkConn."""
        conn_id, peer = self.connection_id(proxy_name)
        protocol, transport = self.accept(peer)
        replay = Replay(self.scenario, conn_id, "c2s")
        replay.feed_to(
            protocol, message_end(self.docs[proxy_name], "c2s", "NewWorkConn")
        )
        return protocol, transport, replay

    def start_user(self, proxy_name, port, control_reader, control):
        """Replay *proxy_name*'s work connection up to its NewWorkConn, then
        a user connects to *port*: check frps's StartWorkConn and the pool
        refill."""
        raw_start, start = self.captured_start(proxy_name)
        work, work_transport, replay = self.work_connection(proxy_name)
        self.assertEqual(work_transport.value(), b"")
        user, user_transport = self.user_connects(port, start["src_port"])
        [(type_byte, body)], rest = split_frames(work_transport.value(), 1)
        self.assertEqual((type_byte, body), (b"s", raw_start))
        self.assertEqual(rest, b"")
        work_transport.clear()
        # Taking the pooled connection asks for the next one, as frps does.
        refill = control_reader.feed(control.value())
        self.assertEqual(names(decoded(refill)), ["ReqWorkConn"])
        self.assertEqual(user_transport.producerState, "producing")
        return work, work_transport, replay, user, user_transport

    def test_login_and_proxies(self):
        """The captured Login, NewProxys and Ping get LoginResp with frps's
        run_id, a ReqWorkConn, the proxies' remote addresses (or, without a
        vhost, an error for the http proxy) and a Pong."""
        _, _, frames = self.login()
        self.check_login_answer(decoded(frames), frames, with_pong=True)

    def test_tcp_work_connection(self):
        """The captured ssh work connection joins the pool, gets frps's
        StartWorkConn for a user of port 27022, and relays both ways."""
        reader, control, _ = self.login()
        work, work_transport, replay, user, user_transport = self.start_user(
            "ssh", 27022, reader, control
        )
        replay.feed_to(work)
        self.assertEqual(user_transport.value(), PAYLOAD)
        user.dataReceived(HELLO)
        user.dataReceived(PATTERN)
        self.assertEqual(work_transport.value(), PAYLOAD)

    def test_encrypted_work_connection(self):
        """The captured ssh-enc work connection reaches the user decrypted and
        decompressed, and the user's bytes go out as frpc reads them."""
        reader, control, _ = self.login()
        work, work_transport, replay, user, user_transport = self.start_user(
            "ssh-enc", 27023, reader, control
        )
        replay.feed_to(work)
        self.assertEqual(user_transport.value(), PAYLOAD)
        user.dataReceived(HELLO)
        user.dataReceived(PATTERN)
        wire = work_transport.value()
        self.assertNotIn(HELLO, wire)
        self.assertTrue(StreamDecryptor(KEY).decrypt(wire).startswith(SNAPPY_STREAM_ID))
        self.assertEqual(decode_payload(wire), PAYLOAD)


class RealFrpcToServerWithoutVhostTests(RealFrpcToServerTests):
    """plain-nomux against a server without vhost_http_port: the http proxy
    is refused and the tcp proxies work as before."""

    vhost = False


class RealFrpcToMuxServerTests(_ServerReplayMixin, SynchronousTestCase):
    """plain-mux: one yamux session; stream 1 is the control stream."""

    scenario = PLAIN_MUX

    def setUp(self):
        super().setUp()
        [entry] = self.index["connections"]
        self.session, transport = self.accept(entry["client_peer"])
        self.out = YamuxReader(transport)
        self.replay = Replay(self.scenario, entry["id"], "c2s")

    def feed_to(self, stream_id, kind="Data", index=0):
        self.replay.feed_to(
            self.session, yamux_frame_end(self.scenario, "c2s", stream_id, kind, index)
        )

    def test_control_stream(self):
        """The session ACKs streams 1 and 3 (with no extra window) and the
        control stream answers the captured Login and NewProxys."""
        self.feed_to(3)
        headers = self.out.read()
        self.assertEqual(headers[0], (WINDOW_UPDATE, ACK, 1, OPEN_DELTA))
        self.assertIn((WINDOW_UPDATE, ACK, 3, OPEN_DELTA), headers)
        self.assertEqual({h[2] for h in headers if h[0] == DATA}, {1})
        frames = ControlReader().feed(self.out.take(1))
        self.check_login_answer(decoded(frames), frames, with_pong=False)

    def start_user(self, stream_id, proxy_name, port, control):
        """A user connects once *stream_id*'s NewWorkConn is in."""
        self.feed_to(stream_id)
        self.out.read()
        self.assertIn((WINDOW_UPDATE, ACK, stream_id, OPEN_DELTA), self.out.headers)
        self.assertEqual(self.out.take(stream_id), b"")
        raw_start, start = self.captured_start(proxy_name)
        user, user_transport = self.user_connects(port, start["src_port"])
        [(type_byte, body)], rest = split_frames(self.out.take(stream_id), 1)
        self.assertEqual((type_byte, body, rest), (b"s", raw_start, b""))
        self.assertEqual(
            names(decoded(control.feed(self.out.take(1)))), ["ReqWorkConn"]
        )
        return user, user_transport

    def test_work_streams(self):
        """Work streams 3 (ssh) and 5 (ssh-enc) get StartWorkConn for their
        users, relay the captured payload both ways, and the rest of the
        session (streams 7 and 9, the FINs) is taken without error."""
        control = ControlReader()
        self.feed_to(3)
        control.feed(self.out.take(1))
        ssh, ssh_transport = self.start_user(3, "ssh", 27022, control)
        enc, enc_transport = self.start_user(5, "ssh-enc", 27023, control)

        self.feed_to(3, index=-1)
        self.assertEqual(ssh_transport.value(), PAYLOAD)
        ssh.dataReceived(HELLO)
        ssh.dataReceived(PATTERN)
        self.assertEqual(self.out.take(3), PAYLOAD)

        self.feed_to(5, index=-1)
        self.assertEqual(enc_transport.value(), PAYLOAD)
        enc.dataReceived(HELLO)
        enc.dataReceived(PATTERN)
        self.assertEqual(decode_payload(self.out.take(5)), PAYLOAD)

        self.replay.feed_to(self.session)
        self.out.read()
        headers = self.out.headers
        for stream_id in (7, 9):
            self.assertIn((WINDOW_UPDATE, ACK, stream_id, OPEN_DELTA), headers)
        for stream_id in (3, 5):
            self.assertIn((WINDOW_UPDATE, FIN, stream_id, 0), headers)
        self.assertEqual(
            [h for h in self.out.headers if h[0] == GO_AWAY or h[1] & RST], []
        )
        self.assertTrue(ssh_transport.disconnecting)
        self.assertTrue(enc_transport.disconnecting)


# -- labrelay client -> real frps ---------------------------------------------


@implementer(IStreamClientEndpoint)
class RecordingEndpoint:
    """Connects every protocol to a new in-memory transport to frps."""

    def __init__(self, wires):
        self._wires = wires
        self.connections = []  # (protocol, transport)

    def connect(self, factory):
        server = IPv4Address("TCP", "127.0.0.1", 27001)
        local = IPv4Address("TCP", "127.0.0.1", 40000 + len(self.connections))
        protocol = factory.buildProtocol(server)
        transport = self._wires.connect(protocol, local, server)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class _ClientReplayMixin:
    """A labrelay client configured with a capture's frpc.ini."""

    scenario = None

    def setUp(self):
        # The captures come from a linux/amd64 frpc.
        self.patch(platform, "system", lambda: "Linux")
        self.patch(platform, "machine", lambda: "x86_64")
        self.docs = documents_by_role(self.scenario)
        self.index = json.loads(read_bytes(self.scenario, "index.json"))
        self.run_id = json.loads(
            captured(self.docs["control"], "s2c", "LoginResp")[0]["raw_json"]
        )["run_id"]
        self.reactor = MemoryReactorClock()
        self.wires = Wires()
        self.endpoint = RecordingEndpoint(self.wires)
        self.locals = []  # (port, protocol, transport) of local services
        config = parse_client_config(
            read_bytes(self.scenario, "frpc.ini").decode("utf-8"), source="frpc.ini"
        )
        self.client = RelayClient(
            config, self.reactor, self.endpoint, exit_on_fatal=False
        )
        self.client.startService()
        self.addCleanup(self._stop)

    def _stop(self):
        stopped = self.client.stopService()
        self.wires.deliver_losses()
        self.wires.close_all()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def complete_dials(self):
        """Let every new dial to a local service succeed."""
        for host, port, factory, _, _ in self.reactor.tcpClients[len(self.locals) :]:
            self.assertEqual(host, "127.0.0.1")
            address = IPv4Address("TCP", host, port)
            protocol = factory.buildProtocol(address)
            transport = self.wires.connect(
                protocol, IPv4Address("TCP", "127.0.0.1", 50000 + port), address
            )
            self.locals.append((port, protocol, transport))

    def check_login(self, data):
        """*data* is exactly one Login frame with frp 0.70's fields in its
        order (less the optional hostname), valid for the token."""
        [(type_byte, body)], rest = split_frames(data)
        self.assertEqual((type_byte, rest), (b"o", b""))
        login = json.loads(body)
        [frp_login] = captured(self.docs["control"], "c2s", "Login")
        expected = dict(frp_login["body"])
        del expected["hostname"]  # labrelay does not send one
        self.assertEqual(list(login), list(expected))
        for key in ("os", "arch", "pool_count", "client_spec"):
            self.assertEqual(login[key], expected[key], key)
        # labrelay announces its own frp version; frps only needs three
        # dotted numbers of at least 0.18.0.
        self.assertEqual(login["version"], FRP_VERSION)
        self.assertGreaterEqual(
            tuple(int(part) for part in login["version"].split(".")), (0, 18, 0)
        )
        self.assertTrue(
            check_privilege_key(TOKEN, login["timestamp"], login["privilege_key"])
        )

    def check_control_writes(self, frames, pings):
        """The encrypted part of the control stream: the NewProxys exactly
        as frpc wrote them (in any order), then *pings* Pings."""
        messages = decoded(frames)
        self.assertEqual(names(messages), ["NewProxy"] * 3 + ["Ping"] * pings)
        written = {
            m.proxy_name: body
            for m, (_, body) in zip(messages, frames)
            if m.name == "NewProxy"
        }
        wanted = {
            m["body"]["proxy_name"]: m["raw_json"].encode()
            for m in captured(self.docs["control"], "c2s", "NewProxy")
        }
        self.assertEqual(written, wanted)
        for _, body in frames[3:]:
            self.assertEqual(body, b"{}")

    def check_running(self):
        """Every proxy runs at the address frps gave it."""
        for m in captured(self.docs["control"], "s2c", "NewProxyResp"):
            state = self.client.proxies[m["body"]["proxy_name"]]
            self.assertEqual(
                (state.status, state.remote_addr), ("running", m["body"]["remote_addr"])
            )
        self.assertEqual(self.client.run_id, self.run_id)

    def check_new_work_conn(self, data, proxy_name):
        [(type_byte, body)], rest = split_frames(data)
        [frp] = captured(self.docs[proxy_name], "c2s", "NewWorkConn")
        self.assertEqual((type_byte, body, rest), (b"w", frp["raw_json"].encode(), b""))


class ClientToRealFrpsTests(_ClientReplayMixin, SynchronousTestCase):
    """plain-nomux: control and work connections are TCP connections."""

    scenario = PLAIN_NOMUX

    def conn_id(self, key):
        return self.docs[key]["id"]

    def logged_in(self):
        """Replay frps's control answers up to its Pong; return the replay
        and the control transport."""
        protocol, transport = self.endpoint.connections[0]
        replay = Replay(self.scenario, self.conn_id("control"), "s2c")
        replay.feed_to(protocol, message_end(self.docs["control"], "s2c", "Pong"))
        return replay, protocol, transport

    def work_connection(self, proxy_name):
        """Replay frps's side of a work connection into the client's newest
        one, completing the dial; return the work and local connections."""
        work, work_transport = self.endpoint.connections[-1]
        self.check_new_work_conn(work_transport.value(), proxy_name)
        work_transport.clear()
        replay = Replay(self.scenario, self.conn_id(proxy_name), "s2c")
        replay.feed_reads(work, 1)
        # StartWorkConn (and for ssh the user's HELLO in the same read)
        # pauses the work connection and dials the service.
        self.assertEqual(work_transport.producerState, "paused")
        self.assertEqual(self.locals, [])
        self.complete_dials()
        [(port, local, local_transport)] = self.locals
        self.assertEqual(work_transport.producerState, "producing")
        replay.feed_to(work)
        return work_transport, port, local, local_transport

    def test_login(self):
        """The first bytes on the control connection are frpc's Login."""
        [(_, transport)] = self.endpoint.connections
        self.check_login(transport.value())

    def test_login_response(self):
        """frps's LoginResp, ReqWorkConn, NewProxyResps and Pong register the
        proxies and open a work connection announcing the run_id."""
        _, _, transport = self.logged_in()
        frames = ControlReader().feed(transport.value())
        self.check_control_writes(frames[1:], pings=1)
        self.check_running()
        self.assertEqual(len(self.endpoint.connections), 2)
        _, work_transport = self.endpoint.connections[1]
        self.check_new_work_conn(work_transport.value(), "ssh")

    def test_tcp_work_connection(self):
        """frps's StartWorkConn for ssh makes the client dial 127.0.0.1:27777,
        which gets the user's bytes, and the service's reply goes back."""
        self.logged_in()
        work_transport, port, local, local_transport = self.work_connection("ssh")
        self.assertEqual(port, 27777)
        self.assertEqual(local_transport.value(), PAYLOAD)
        local.dataReceived(HELLO)
        local.dataReceived(PATTERN)
        self.assertEqual(work_transport.value(), PAYLOAD)

    def test_encrypted_work_connection(self):
        """The next ReqWorkConn opens another work connection; frps's
        encrypted, compressed ssh-enc payload reaches the service in clear
        and the reply goes back as frps reads it."""
        replay, control, _ = self.logged_in()
        replay.feed_to(
            control, message_end(self.docs["control"], "s2c", "ReqWorkConn", 1)
        )
        self.assertEqual(len(self.endpoint.connections), 3)
        work_transport, port, local, local_transport = self.work_connection("ssh-enc")
        self.assertEqual(port, 27777)
        self.assertEqual(local_transport.value(), PAYLOAD)
        local.dataReceived(HELLO)
        local.dataReceived(PATTERN)
        wire = work_transport.value()
        self.assertNotIn(HELLO, wire)
        self.assertTrue(StreamDecryptor(KEY).decrypt(wire).startswith(SNAPPY_STREAM_ID))
        self.assertEqual(decode_payload(wire), PAYLOAD)

    def test_http_work_connection(self):
        """frps's StartWorkConn for jupyter makes the client dial
        127.0.0.1:27888 with the rewritten request; the response goes back."""
        self.logged_in()
        doc = self.docs["jupyter"]
        work_transport, port, local, local_transport = self.work_connection("jupyter")
        self.assertEqual(port, 27888)
        self.assertEqual(local_transport.value(), payload_bytes(doc, "s2c"))
        local.dataReceived(payload_bytes(doc, "c2s"))
        self.assertEqual(work_transport.value(), payload_bytes(doc, "c2s"))


class MuxClientToRealFrpsTests(_ClientReplayMixin, SynchronousTestCase):
    """plain-mux: the client's streams on one yamux session."""

    scenario = PLAIN_MUX

    def setUp(self):
        super().setUp()
        [(self.session, transport)] = self.endpoint.connections
        self.out = YamuxReader(transport)
        [entry] = self.index["connections"]
        self.replay = Replay(
            self.scenario, entry["id"], "s2c", after_each=self.complete_dials
        )

    def feed_to(self, stream_id, kind="Data", index=0):
        self.replay.feed_to(
            self.session, yamux_frame_end(self.scenario, "s2c", stream_id, kind, index)
        )

    def test_first_bytes(self):
        """The session opens stream 1 (with no extra window), then sends the
        Login on it."""
        headers = self.out.read()
        self.assertEqual(headers[0], (WINDOW_UPDATE, SYN, 1, OPEN_DELTA))
        self.assertEqual(headers[1][:3], (DATA, 0, 1))
        self.assertEqual(len(headers), 2)
        self.check_login(self.out.take(1))

    def test_replay(self):
        """frps's captured session registers the proxies, and its work
        streams 3, 5 and 7 reach the local services and carry their replies
        back (ssh-enc encrypted and compressed)."""
        control = ControlReader()
        control.feed(self.out.take(1))  # the Login
        self.feed_to(1, index=5)  # up to the third NewProxyResp
        frames = control.feed(self.out.take(1))
        # labrelay's client sends Ping with tcp_mux as well (frp 0.70 does
        # not by default; frps answers it either way).
        pings = names(decoded(frames)).count("Ping")
        self.assertLessEqual(pings, 1)
        self.check_control_writes(frames, pings)
        self.check_running()
        self.assertEqual(
            [h for h in self.out.headers if h[1] & SYN],
            [(WINDOW_UPDATE, SYN, 1, OPEN_DELTA), (WINDOW_UPDATE, SYN, 3, OPEN_DELTA)],
        )
        self.check_new_work_conn(self.out.take(3), "ssh")

        self.feed_to(3, index=-1)  # StartWorkConn, HELLO, PATTERN
        self.check_new_work_conn(self.out.take(5), "ssh-enc")
        [(port, local, local_transport)] = self.locals
        self.assertEqual(port, 27777)
        self.assertEqual(local_transport.value(), PAYLOAD)
        local.dataReceived(HELLO)
        local.dataReceived(PATTERN)
        self.assertEqual(self.out.take(3), PAYLOAD)

        self.feed_to(5, index=-1)
        self.check_new_work_conn(self.out.take(7), "jupyter")
        port, local, local_transport = self.locals[1]
        self.assertEqual(port, 27777)
        self.assertEqual(local_transport.value(), PAYLOAD)
        local.dataReceived(HELLO)
        local.dataReceived(PATTERN)
        self.assertEqual(decode_payload(self.out.take(5)), PAYLOAD)

        self.feed_to(7, index=-1)
        doc = self.docs["jupyter"]
        port, local, local_transport = self.locals[2]
        self.assertEqual(port, 27888)
        self.assertEqual(local_transport.value(), payload_bytes(doc, "s2c"))
        local.dataReceived(payload_bytes(doc, "c2s"))
        self.assertEqual(self.out.take(7), payload_bytes(doc, "c2s"))

        self.replay.feed_to(self.session)
        self.check_new_work_conn(self.out.take(9), "work")
        self.assertEqual(len(self.locals), 3)
        self.assertEqual(
            [h[2] for h in self.out.headers if h[1] & SYN], [1, 3, 5, 7, 9]
        )
        self.assertEqual(
            [h for h in self.out.headers if h[0] == GO_AWAY or h[1] & RST], []
        )
