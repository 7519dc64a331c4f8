# -*- test-case-name: tests.unit.test_udp_packets -*-
"""
frp's UDPPacket message as datagrams: :func:`packet_for` wraps one
datagram and the address of the user who sent it (or is to receive it),
:func:`datagram_of` unwraps one, and :class:`UdpFrameReader` turns the
payload of a udp work connection back into messages with a frame bound
derived from ``udp_packet_size``.

On the wire (frp's Go ``msg.UDPPacket``) the content ``c`` is base64
(Go's encoding of ``[]byte``) and the addresses ``l`` and ``r`` are Go
``*net.UDPAddr`` values, ``{"IP": "192.0.2.7", "Port": 5353, "Zone": ""}``.
frp fills only ``c`` and ``r``; ``l`` is read and ignored.
"""

import base64
import binascii
import ipaddress

from .errors import ProtocolError
from .protocol import messages
from .protocol.framing import MAX_BODY_LENGTH, MessageParser, encode_message

#: frp's default ``udp_packet_size``: the largest datagram read, in bytes.
DEFAULT_UDP_PACKET_SIZE = 1500

#: Bytes a UDPPacket frame adds around the base64 of its content: the
#: 9-byte header, the JSON keys and an IPv6 address with a zone.
FRAME_OVERHEAD = 256


def frame_limit(udp_packet_size: int) -> int:
    """The largest UDPPacket body accepted when datagrams are at most
    *udp_packet_size* bytes (never more than frp's own 10240)."""
    base64_length = (max(udp_packet_size, 0) + 2) // 3 * 4
    return min(MAX_BODY_LENGTH, base64_length + FRAME_OVERHEAD)


def address_json(host: str, port: int) -> dict:
    """A Go ``net.UDPAddr`` as JSON (an IPv6 zone ``fe80::1%eth0`` apart)."""
    host, _, zone = host.partition("%")
    return {"IP": host, "Port": port, "Zone": zone}


def address_from_json(value) -> tuple:
    """
    ``(host, port)`` of a Go ``net.UDPAddr`` decoded from JSON (keys in any
    case, as Go matches them); raises :class:`ProtocolError` for anything
    that is not an IP address and a port.
    """
    if not isinstance(value, dict):
        raise ProtocolError(f"UDPPacket address is {type(value).__name__}")
    fields = {str(key).casefold(): item for key, item in value.items()}
    host, port, zone = fields.get("ip"), fields.get("port"), fields.get("zone")
    if not isinstance(host, str):
        raise ProtocolError("UDPPacket address has no IP")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ProtocolError(f"UDPPacket address {host[:64]!r} is not an IP") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ProtocolError(f"UDPPacket port {port!r} is not a port")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Go's 16-byte form of an IPv4 address
    text = str(ip)
    if zone and isinstance(zone, str) and ip.version == 6:
        text = f"{text}%{zone}"
    return text, port


def peer_key(address) -> tuple:
    """``(host, port)`` of a socket address in one spelling (an IPv6
    address compressed, an IPv4-mapped one as IPv4), so that the address
    a datagram came from and the one a reply names compare equal."""
    host, port = address[0], address[1]
    name, _, zone = host.partition("%")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return host, port
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    text = str(ip)
    if zone and ip.version == 6:
        text = f"{text}%{zone}"
    return text, port


def packet_for(data: bytes, address: tuple) -> messages.Message:
    """The UDPPacket carrying datagram *data* for the user at *address*
    (``(host, port)``)."""
    return messages.UDPPacket(
        c=base64.b64encode(data).decode("ascii"), r=address_json(*address[:2])
    )


def datagram_of(packet) -> tuple:
    """``(data, (host, port))`` of a received UDPPacket; raises
    :class:`ProtocolError` when it has no valid address or content."""
    try:
        # Go's decoder skips line breaks inside base64
        text = packet.c.replace("\r", "").replace("\n", "")
        # Go's StdEncoding wants whole 4-character groups and at most two
        # '=' at the end; binascii's checks of that differ between Pythons
        if len(text) % 4 or len(text) - len(text.rstrip("=")) > 2:
            raise ValueError("not whole base64 groups")
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("UDPPacket content is not base64") from None
    return data, address_from_json(packet.r)


def encode_packet(data: bytes, address: tuple) -> bytes:
    """The framed UDPPacket for *data* and *address*, ready for the codec."""
    return encode_message(packet_for(data, address))


class UdpFrameReader:
    """
    The messages of a udp work connection's (decoded) payload: UDPPacket
    and Ping.  A frame longer than :func:`frame_limit` of *udp_packet_size*
    raises :class:`ProtocolError` before any of its body is held.
    """

    def __init__(self, udp_packet_size: int):
        self._parser = MessageParser(max_body_length=frame_limit(udp_packet_size))

    def feed(self, data: bytes) -> list:
        """The complete messages in what has arrived so far."""
        self._parser.feed(data)
        return list(self._parser.messages())


#: Seconds between two log lines about dropped datagrams of one proxy.
DROP_LOG_INTERVAL = 10.0


class DropLog:
    """
    Counts dropped datagrams of one proxy and says so in at most one line
    every :data:`DROP_LOG_INTERVAL` seconds (a peer can make us drop many
    per second; it must not fill the log).
    """

    def __init__(self, clock, log, what: str):
        self._clock = clock
        self._log = log
        self._what = what
        self._next_line = 0.0
        self._unsaid = 0
        self.total = 0

    def dropped(self, why: str) -> None:
        self.total += 1
        self._unsaid += 1
        now = self._clock.seconds()
        if now < self._next_line:
            return
        self._log.warn(
            "{what}: dropped {count} datagram(s); last: {why}",
            what=self._what,
            count=self._unsaid,
            why=why,
        )
        self._unsaid = 0
        self._next_line = now + DROP_LOG_INTERVAL
