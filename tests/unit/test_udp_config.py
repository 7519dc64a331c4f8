"""
``type = udp`` and ``udp_packet_size`` in INI and in frp's v1 format, and
the server's table of answerable users (:class:`PeerTable`) on a Clock.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_client_config, parse_server_config
from labrelay.server.udp_proxy import PeerTable

from ..support.formats import in_format

CLIENT_INI = """[common]
server_addr = 127.0.0.1
udp_packet_size = 1200

[dns]
type = udp
local_ip = 10.0.0.53
local_port = 53
remote_port = 5353
use_encryption = true
use_compression = true
"""


class UdpConfigTests(SynchronousTestCase):
    def check(self, config):
        [proxy] = config.proxies
        self.assertEqual(
            (proxy.type, proxy.local_ip, proxy.local_port, proxy.remote_port),
            ("udp", "10.0.0.53", 53, 5353),
        )
        self.assertTrue(proxy.use_encryption and proxy.use_compression)
        self.assertEqual(config.udp_packet_size, 1200)

    def test_ini(self):
        self.check(parse_client_config(CLIENT_INI, source="frpc.ini"))

    def test_v1_formats(self):
        for fmt in ("toml", "yaml", "json"):
            text, source = in_format(CLIENT_INI, "frpc.ini", fmt)
            self.assertIn("udpPacketSize", text)
            self.check(parse_client_config(text, source=source))

    def test_server_udp_packet_size(self):
        config = parse_server_config(
            "[common]\nudp_packet_size = 9000\n", source="frps.ini"
        )
        self.assertEqual(config.udp_packet_size, 9000)
        default = parse_server_config("[common]\n", source="frps.ini")
        self.assertEqual(default.udp_packet_size, 1500)


class PeerTableTests(SynchronousTestCase):
    def test_expiry(self):
        clock = Clock()
        peers = PeerTable(clock, limit=10, seconds=120)
        peers.touch(("192.0.2.1", 1))
        clock.advance(119)
        self.assertTrue(peers.knows(("192.0.2.1", 1)))
        clock.advance(2)
        self.assertFalse(peers.knows(("192.0.2.1", 1)))
        self.assertFalse(peers.knows(("192.0.2.9", 1)))

    def test_cap_forgets_oldest(self):
        peers = PeerTable(Clock(), limit=3, seconds=120)
        for n in range(4):
            peers.touch(("192.0.2.1", n))
        self.assertEqual(len(peers), 3)
        self.assertFalse(peers.knows(("192.0.2.1", 0)))
        self.assertTrue(peers.knows(("192.0.2.1", 3)))
