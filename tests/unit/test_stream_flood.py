# -*- test-case-name: tests.unit.test_stream_flood -*-
"""A tcp_mux peer cannot hold thousands of streams that never say what they are."""

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.mux.frames import (
    FLAG_RST,
    FLAG_SYN,
    TYPE_WINDOW_UPDATE,
    FrameParser,
    encode_header,
)
from labrelay.server.bind_port import ServerSession
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options


class StreamFloodTests(SynchronousTestCase):
    def test_unidentified_streams_are_capped(self):
        """SYNs beyond the cap are reset; the held streams stay at the cap."""
        config = parse_server_config("[common]\ntoken = t\n")
        server = RelayServer(
            config,
            MemoryReactorClock(),
            server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
        )
        session = ServerSession(
            server.context, is_client=False, clock=server.clock, keepalive_interval=0
        )
        transport = StringTransport()
        session.makeConnection(transport)
        cap = ServerSession.MAX_UNIDENTIFIED_STREAMS
        syns = b"".join(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 2 * i + 1, 0)
            for i in range(cap + 40)
        )
        session.dataReceived(syns)
        frames = FrameParser().feed(transport.value())
        resets = [f for f in frames if f.header.flags & FLAG_RST]
        self.assertEqual(len(resets), 40)
        self.assertEqual(session.streams_open, cap)
        session.close()
