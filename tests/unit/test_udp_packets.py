"""
UDPPacket as datagrams (:mod:`labrelay.udp_packets`): base64 content, Go
``net.UDPAddr`` addresses, the frame bound, the rate of drop lines; and
the frames of a real frpc/frps pair (tests/data/udp-nomux).
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import ProtocolError
from labrelay.protocol import messages
from labrelay.protocol.framing import MAX_BODY_LENGTH, MessageParser, encode_message
from labrelay.udp_packets import (
    DROP_LOG_INTERVAL,
    DropLog,
    UdpFrameReader,
    address_from_json,
    address_json,
    datagram_of,
    encode_packet,
    frame_limit,
    packet_for,
    peer_key,
)

from ..support.paths import DATA

HELLO = b"hello labrelay udp\n"
PATTERN = bytes(i % 251 for i in range(1400))


def captured(name: str) -> bytes:
    return DATA.child("udp-nomux").child(f"{name}.bin").getContent()


class PacketTests(SynchronousTestCase):
    def test_frame_as_frp_writes_it(self):
        """Key order, base64 and the address object are Go's."""
        self.assertEqual(
            encode_packet(b"hi", ("127.0.0.1", 5353)),
            b"u"
            + (57).to_bytes(8, "big")
            + b'{"c":"aGk=","r":{"IP":"127.0.0.1","Port":5353,"Zone":""}}',
        )

    def test_empty_datagram_leaves_content_out(self):
        """Go's omitempty: an empty datagram has no ``c``; it decodes back
        to an empty datagram."""
        packet = packet_for(b"", ("::1", 53))
        self.assertNotIn(b'"c"', packet.to_json_bytes())
        self.assertEqual(datagram_of(packet), (b"", ("::1", 53)))

    def test_round_trip(self):
        for address in (("192.0.2.7", 1), ("2001:db8::1", 65535), ("fe80::1%eth0", 9)):
            data = bytes(range(256))
            [packet] = self._parse(encode_packet(data, address))
            self.assertEqual(datagram_of(packet), (data, address))

    def _parse(self, frame):
        parser = MessageParser()
        parser.feed(frame)
        return list(parser.messages())

    def test_base64_line_breaks_are_skipped(self):
        packet = messages.UDPPacket(c="aG\r\nk=", r=address_json("127.0.0.1", 7))
        self.assertEqual(datagram_of(packet)[0], b"hi")

    def test_bad_base64(self):
        for text in ("!!", "aGk", "aGk=="):
            packet = messages.UDPPacket(c=text, r=address_json("127.0.0.1", 7))
            self.assertRaises(ProtocolError, datagram_of, packet)

    def test_address_forms(self):
        """Keys in any case (Go matches them so); an IPv4-mapped IPv6
        address (Go's 16-byte form) is the IPv4 address."""
        self.assertEqual(
            address_from_json({"ip": "::ffff:10.0.0.1", "PORT": 80}), ("10.0.0.1", 80)
        )
        self.assertEqual(
            address_from_json({"IP": "fe80::1", "Port": 80, "Zone": "eth0"}),
            ("fe80::1%eth0", 80),
        )
        self.assertEqual(address_json("fe80::1%eth0", 5)["Zone"], "eth0")

    def test_bad_addresses(self):
        for value in (
            None,
            "127.0.0.1:53",
            {},
            {"IP": "example.org", "Port": 53},
            {"IP": "127.0.0.1"},
            {"IP": "127.0.0.1", "Port": 0},
            {"IP": "127.0.0.1", "Port": 65536},
            {"IP": "127.0.0.1", "Port": True},
            {"IP": "127.0.0.1", "Port": "53"},
            {"IP": 2130706433, "Port": 53},
        ):
            self.assertRaises(ProtocolError, address_from_json, value)

    def test_no_address(self):
        self.assertRaises(ProtocolError, datagram_of, messages.UDPPacket(c="aGk="))

    def test_peer_key_one_spelling(self):
        self.assertEqual(peer_key(("::ffff:127.0.0.1", 5)), ("127.0.0.1", 5))
        self.assertEqual(peer_key(("2001:db8:0::1", 5, 0, 0)), ("2001:db8::1", 5))


class FrameBoundTests(SynchronousTestCase):
    def test_limit_follows_udp_packet_size(self):
        self.assertEqual(frame_limit(1500), 2000 + 256)
        self.assertEqual(frame_limit(60000), MAX_BODY_LENGTH)

    def test_largest_datagram_fits(self):
        """A datagram of udp_packet_size bytes to the longest address fits."""
        for size in (1, 1500, 4000):
            frame = encode_packet(
                b"\xff" * size,
                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%interface0", 65535),
            )
            [packet] = UdpFrameReader(size).feed(frame)
            self.assertEqual(len(datagram_of(packet)[0]), size)

    def test_oversized_frame_refused_before_its_body(self):
        """The header alone is enough to refuse it."""
        frame = encode_packet(b"x" * 1200, ("127.0.0.1", 9))
        reader = UdpFrameReader(800)
        self.assertRaises(ProtocolError, reader.feed, frame[:9])

    def test_frames_split_anywhere(self):
        stream = encode_packet(HELLO, ("127.0.0.1", 1)) + encode_message(
            messages.Ping()
        )
        reader = UdpFrameReader(1500)
        got = []
        for byte in range(len(stream)):
            got += reader.feed(stream[byte : byte + 1])
        self.assertEqual([m.name for m in got], ["UDPPacket", "Ping"])


class CapturedStreamTests(SynchronousTestCase):
    """The udp work connection between real frpc and frps 0.70.0."""

    def _messages(self, name):
        parser = MessageParser()
        parser.feed(captured(name))
        found = list(parser.messages())
        self.assertEqual(parser.take_rest(), b"")
        return found

    def test_server_to_client(self):
        start, *packets = self._messages("conn2-server-to-client")
        self.assertEqual(start, messages.StartWorkConn(proxy_name="dns"))
        self.assertEqual(
            [datagram_of(p) for p in packets],
            [
                (HELLO, ("127.0.0.1", 27061)),
                (PATTERN, ("127.0.0.1", 27062)),
                (PATTERN, ("127.0.0.1", 27061)),
            ],
        )

    def test_client_to_server(self):
        new_work, *rest = self._messages("conn2-client-to-server")
        self.assertEqual(new_work.name, "NewWorkConn")
        self.assertEqual([m.name for m in rest], ["UDPPacket"] * 3 + ["Ping"])
        self.assertEqual(
            [datagram_of(p)[1] for p in rest[:3]],
            [("127.0.0.1", 27061), ("127.0.0.1", 27062), ("127.0.0.1", 27061)],
        )

    def test_labrelay_writes_the_same_bytes(self):
        """UDPPacket frames carry nothing that varies between runs, so
        labrelay's are compared byte for byte."""
        server_to_client = captured("conn2-server-to-client")
        client_to_server = captured("conn2-client-to-server")
        for data, address in (
            (HELLO, ("127.0.0.1", 27061)),
            (PATTERN, ("127.0.0.1", 27062)),
        ):
            self.assertIn(encode_packet(data, address), server_to_client)
            self.assertIn(encode_packet(data, address), client_to_server)
        self.assertTrue(client_to_server.endswith(encode_message(messages.Ping())))


class DropLogTests(SynchronousTestCase):
    def test_one_line_per_interval(self):
        lines = []

        class Log:
            def warn(self, text, **fields):
                lines.append(fields)

        clock = Clock()
        drops = DropLog(clock, Log(), "udp proxy [x]")
        for _ in range(1000):
            drops.dropped("queue full")
        self.assertEqual(len(lines), 1)
        clock.advance(DROP_LOG_INTERVAL)
        drops.dropped("queue full")
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1]["count"], 1000)
        self.assertEqual(drops.total, 1001)
