# -*- test-case-name: tests.unit.test_old_versions -*-
"""
What older frp releases send, accepted: pre-0.44 messages with every field
(no omitempty), yamux peers with the 256 KiB window of frp < 0.50, and
LoginResp fields that newer frp dropped.
"""

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.mux.frames import (
    FLAG_SYN,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    FrameParser,
    encode_header,
)
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.framing import MessageParser
from labrelay.server.connection import ServerConnection
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

TOKEN = "old-token"
OLD_WINDOW = 256 * 1024


def frame(type_byte: bytes, body: bytes) -> bytes:
    return type_byte + len(body).to_bytes(8, "big") + body


class OldMessagesTests(SynchronousTestCase):
    """Messages as frp before v0.44 wrote them: every field, empty or not."""

    def server(self):
        config = parse_server_config(f"[common]\ntoken = {TOKEN}\ntcp_mux = false\n")
        reactor = MemoryReactorClock()
        server = RelayServer(
            config, reactor, server_tls_options(), listen="tcp:0:interface=127.0.0.1"
        )
        return server

    def test_pre_044_login_is_accepted(self):
        """A Login carrying every field, zero values included, logs in."""
        server = self.server()
        connection = ServerConnection(server.context)
        transport = StringTransport()
        connection.makeConnection(transport)
        ts = 1600000000
        body = (
            '{"version":"0.33.0","hostname":"","os":"linux","arch":"amd64",'
            '"user":"","privilege_key":"%s","timestamp":%d,"run_id":"",'
            '"metas":null,"pool_count":1}' % (privilege_key(TOKEN, ts), ts)
        )
        connection.dataReceived(frame(b"o", body.encode()))
        parser = MessageParser()
        parser.feed(transport.value())
        reply = parser.next_message()
        self.assertIsInstance(reply, messages.LoginResp)
        self.assertEqual(reply.error, "")
        self.assertEqual(len(reply.run_id), 16)
        self.assertEqual(len(server.registry.controls), 1)
        connection.transport.loseConnection()
        connection.connectionLost(None)

    def test_old_login_resp_with_server_udp_port(self):
        """LoginResp of frp <= 0.47 (server_udp_port, empty error) decodes."""
        parser = MessageParser()
        parser.feed(
            frame(
                b"1",
                b'{"version":"0.36.2","run_id":"abc","server_udp_port":0,"error":""}',
            )
        )
        reply = parser.next_message()
        self.assertEqual(
            (reply.version, reply.run_id, reply.error), ("0.36.2", "abc", "")
        )

    def test_old_start_work_conn_with_every_field(self):
        """A StartWorkConn with empty dst and error fields decodes."""
        parser = MessageParser()
        parser.feed(
            frame(
                b"s",
                b'{"proxy_name":"ssh","src_addr":"1.2.3.4",'
                b'"dst_addr":"","src_port":5555,"dst_port":0,'
                b'"error":""}',
            )
        )
        message = parser.next_message()
        self.assertEqual(
            (message.proxy_name, message.src_port, message.error), ("ssh", 5555, "")
        )


class Talker(Protocol):
    """Writes a large reply as soon as its stream is accepted."""

    def connectionMade(self):
        self.transport.write(b"x" * (1024 * 1024))


class OldYamuxWindowTests(SynchronousTestCase):
    """frp < 0.50 opens streams with SYN delta 0 (a 256 KiB window)."""

    def test_server_respects_256k_window(self):
        """Sending to an old peer stops at 256 KiB until it grants more."""
        clock = Clock()
        session = YamuxSession(
            is_client=False,
            clock=clock,
            accept_stream=lambda stream: Talker(),
            keepalive_interval=0,
        )
        transport = StringTransport()
        session.makeConnection(transport)
        session.dataReceived(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        frames = FrameParser().feed(transport.value())
        sent = sum(
            len(f.payload)
            for f in frames
            if f.header.type == TYPE_DATA and f.header.stream_id == 1
        )
        self.assertEqual(sent, OLD_WINDOW)
        transport.clear()
        session.dataReceived(encode_header(TYPE_WINDOW_UPDATE, 0, 1, 100000))
        frames = FrameParser().feed(transport.value())
        more = sum(len(f.payload) for f in frames if f.header.type == TYPE_DATA)
        self.assertEqual(more, 100000)
        session.close()
        self.assertEqual(clock.getDelayedCalls(), [])
