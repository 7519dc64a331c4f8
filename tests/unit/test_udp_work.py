"""
The client's udp work connection (:class:`~labrelay.client.udp_work.UdpWorkLink`)
in memory: one local socket per user, idle expiry on a task.Clock, the
cap on users, Pings, and a bad frame.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.client.udp_work import (
    MAX_LOCAL_PEERS,
    PEER_IDLE_SECONDS,
    PING_SECONDS,
    UdpWorkLink,
)
from labrelay.protocol import messages
from labrelay.protocol.framing import MessageParser, encode_message
from labrelay.udp_packets import datagram_of, encode_packet

from ..support.fakes import Stub


class FakeUdpPort:
    def __init__(self, protocol):
        self.protocol = protocol
        self.connected_to = None
        self.written = []
        self.listening = True
        self.reading = True
        protocol.makeConnection(self)

    def connect(self, host, port):
        self.connected_to = (host, port)

    def write(self, data):
        self.written.append(data)

    def stopListening(self):
        self.listening = False

    def stopReading(self):
        self.reading = False

    def startReading(self):
        self.reading = True


class FakeUdpReactor:
    def __init__(self):
        self.ports = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = FakeUdpPort(protocol)
        self.ports.append(listening)
        return listening


class LinkTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.reactor = FakeUdpReactor()
        config = Stub(token="t", udp_packet_size=1500)
        self.client = Stub(
            reactor=self.reactor, clock=self.clock, config=config, udp_links={}
        )
        self.proxy = Stub(
            name="dns",
            local_ip="127.0.0.1",
            local_port=53,
            use_encryption=False,
            use_compression=False,
        )
        self.work = Stub(transport=StringTransport(), sink=None)
        self.link = UdpWorkLink(self.client, self.proxy, self.work)
        self.link.start()

    def from_server(self, data, address):
        self.link.forward(self.work, encode_packet(data, address))

    def sent_to_server(self):
        parser = MessageParser()
        parser.feed(self.work.transport.value())
        return list(parser.messages())

    def test_one_socket_per_user(self):
        self.from_server(b"a", ("192.0.2.1", 1000))
        self.from_server(b"b", ("192.0.2.1", 1000))
        self.from_server(b"c", ("192.0.2.2", 1000))
        first, second = self.reactor.ports
        self.assertEqual(first.connected_to, ("127.0.0.1", 53))
        self.assertEqual(first.written, [b"a", b"b"])
        self.assertEqual(second.written, [b"c"])

    def test_reply_names_its_user(self):
        self.from_server(b"q", ("192.0.2.1", 1000))
        self.from_server(b"q", ("192.0.2.2", 2000))
        self.reactor.ports[1].protocol.datagramReceived(b"r2", ("127.0.0.1", 53))
        [packet] = self.sent_to_server()
        self.assertEqual(datagram_of(packet), (b"r2", ("192.0.2.2", 2000)))

    def test_idle_user_forgotten(self):
        self.from_server(b"q", ("192.0.2.1", 1000))
        port = self.reactor.ports[0]
        self.clock.advance(PEER_IDLE_SECONDS - 1)
        port.protocol.datagramReceived(b"r", ("127.0.0.1", 53))  # activity
        self.clock.advance(PEER_IDLE_SECONDS - 1)
        self.assertTrue(port.listening)
        self.clock.advance(1)
        self.assertFalse(port.listening)
        self.assertEqual(len(self.link.peers), 0)
        self.from_server(b"again", ("192.0.2.1", 1000))
        self.assertEqual(len(self.reactor.ports), 2)

    def test_cap_on_users(self):
        for n in range(MAX_LOCAL_PEERS + 1):
            self.from_server(b"x", ("192.0.2.1", 1000 + n))
        self.assertEqual(len(self.link.peers), MAX_LOCAL_PEERS)
        self.assertFalse(self.reactor.ports[0].listening)
        self.assertTrue(self.reactor.ports[1].listening)

    def test_ping_every_30s(self):
        self.clock.advance(PING_SECONDS)
        self.assertEqual(self.sent_to_server(), [messages.Ping()])

    def test_backpressure_stops_reading(self):
        self.from_server(b"q", ("192.0.2.1", 1000))
        self.link.pauseProducing()
        self.assertFalse(self.reactor.ports[0].reading)
        self.link.resumeProducing()
        self.assertTrue(self.reactor.ports[0].reading)

    def test_oversized_frame_closes(self):
        self.from_server(b"q", ("192.0.2.1", 1000))
        self.link.forward(self.work, encode_packet(b"x" * 4000, ("192.0.2.1", 1)))
        self.assertTrue(self.work.transport.disconnecting)
        self.assertFalse(self.reactor.ports[0].listening)
        self.assertEqual(self.client.udp_links, {})

    def test_unexpected_message_closes(self):
        self.link.forward(self.work, encode_message(messages.ReqWorkConn()))
        self.assertTrue(self.work.transport.disconnecting)

    def test_newer_link_replaces_older(self):
        work = Stub(transport=StringTransport(), sink=None)
        newer = UdpWorkLink(self.client, self.proxy, work)
        newer.start()
        self.assertTrue(self.work.transport.disconnecting)
        self.assertIs(self.client.udp_links["dns"], newer)
