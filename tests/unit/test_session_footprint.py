# -*- test-case-name: tests.unit.test_session_footprint -*-
"""
A relay holds one yamux session and a few streams per client, so their
per-instance cost is kept small (bench/scale_bench.py measures it with
10,000 clients): the session's state lives in slots, a server session
sets every attribute in ``__init__`` (an attribute added later gives the
instance a dict of its own, 1.3 KiB), and a stream's buffers are lists
(an empty deque costs 760 bytes), as are a work-connection pool's.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.mux.frames import FLAG_SYN, TYPE_DATA, TYPE_WINDOW_UPDATE, encode_header
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.framing import encode_message
from labrelay.server.bind_port import ServerSession
from labrelay.server.service import RelayServer
from labrelay.server.workpool import WorkConnPool
from labrelay.tls import server_tls_options


class SessionFootprintTests(SynchronousTestCase):
    def test_yamux_session_state_in_slots(self):
        """A new session has nothing in its instance dict."""
        session = YamuxSession(is_client=True, clock=Clock())
        self.assertEqual(vars(session), {})

    def test_stream_buffers_are_lists(self):
        """A stream's input and send buffers start as empty lists."""
        session = YamuxSession(is_client=True, clock=Clock(), keepalive_interval=0)
        session.makeConnection(StringTransport())
        stream = session.open_stream(_Sink())
        self.assertEqual(type(stream._in), list)
        self.assertEqual(type(stream._out._chunks), list)
        session.close()

    def test_work_pool_queues_are_lists(self):
        """A client's work-connection pool starts with two empty lists."""
        pool = WorkConnPool(Clock(), lambda: None, capacity=11, timeout=10)
        self.assertEqual((type(pool._idle), type(pool._waiters)), (list, list))

    def test_server_session_sets_its_attributes_at_init(self):
        """Logging in over a server session adds no attribute to it."""
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
        before = set(vars(session))
        session.makeConnection(StringTransport())
        login = encode_message(
            messages.Login(
                version="0.70.0",
                privilege_key=privilege_key("t", 1),
                timestamp=1,
            )
        )
        session.dataReceived(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + encode_header(TYPE_DATA, 0, 1, len(login))
            + login
        )
        self.assertTrue(session.logged_in)
        self.assertEqual(set(vars(session)) - before, {"transport", "connected"})
        session.close()


class _Sink:
    """A protocol that takes whatever a stream gives it."""

    transport = None

    def makeConnection(self, transport):
        self.transport = transport

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        pass
