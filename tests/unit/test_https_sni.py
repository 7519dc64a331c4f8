"""
The ClientHello server-name parser (labrelay.server.https_sni): real
hellos from Python's TLS stack, split anywhere and across records, and
hostile input (garbage, truncation, byte flips, oversized lengths), which
must only ever give None (more bytes) or HelloError.
"""

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.https_sni import (
    MAX_HELLO,
    ClientHello,
    HelloError,
    read_server_name,
)
from tests.support.named_ports import client_hello

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: DNS names: a TLS client sends no server_name for an IP address (RFC 6066),
#: so "0.0.0.0" has none to read
NAMES = (
    st.lists(LABEL, min_size=1, max_size=5)
    .map(".".join)
    .filter(lambda name: not _is_ip(name))
)
HELLO = client_hello("tb.lab.example.test")


def records(message: bytes, sizes) -> bytes:
    """*message* (a handshake message) split into handshake records."""
    out = bytearray()
    offset = 0
    for size in list(sizes) + [len(message)]:
        chunk = message[offset : offset + max(size, 1)]
        if not chunk:
            break
        out += bytes([22, 3, 1]) + struct.pack("!H", len(chunk)) + chunk
        offset += len(chunk)
    return bytes(out)


def hello_message(name_bytes: bytes, extra_extensions=b"") -> bytes:
    """A minimal ClientHello message (with header) naming *name_bytes*."""
    entry = b"\x00" + struct.pack("!H", len(name_bytes)) + name_bytes
    sni = struct.pack("!H", len(entry)) + entry
    extensions = struct.pack("!HH", 0, len(sni)) + sni + extra_extensions
    body = (
        b"\x03\x03"
        + b"\x00" * 32
        + b"\x00"
        + b"\x00\x02\x13\x01"
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body


class RealHellos(SynchronousTestCase):
    def test_name(self):
        self.assertEqual(read_server_name(HELLO), ClientHello("tb.lab.example.test"))

    def test_bytes_after_the_hello_are_not_read(self):
        self.assertEqual(
            read_server_name(HELLO + b"\x17\x03\x03garbage"),
            ClientHello("tb.lab.example.test"),
        )

    def test_no_sni(self):
        self.assertEqual(read_server_name(client_hello(None)), ClientHello(""))

    def test_upper_case_is_lowered(self):
        hello = records(hello_message(b"TB.Lab.Example"), [])
        self.assertEqual(read_server_name(hello), ClientHello("tb.lab.example"))

    @settings(max_examples=50, deadline=None)
    @given(NAMES, st.sampled_from([(), ("h2", "http/1.1")]))
    def test_every_prefix_asks_for_more(self, name, alpn):
        hello = client_hello(name, alpn=alpn)
        for end in range(len(hello)):
            self.assertIsNone(read_server_name(hello[:end]))
        self.assertEqual(read_server_name(hello), ClientHello(name))

    @settings(max_examples=200)
    @given(st.lists(st.integers(1, 300), max_size=8))
    def test_split_across_records(self, sizes):
        message = HELLO[5:]
        self.assertEqual(
            read_server_name(records(message, sizes)),
            ClientHello("tb.lab.example.test"),
        )


class HostileInput(SynchronousTestCase):
    def assertRefused(self, data, text=""):
        with self.assertRaises(HelloError) as caught:
            read_server_name(data)
        self.assertIn(text, str(caught.exception))

    @settings(max_examples=500)
    @given(st.binary(max_size=600))
    def test_garbage_never_crashes(self, data):
        try:
            result = read_server_name(data)
        except HelloError:
            return
        self.assertTrue(result is None or isinstance(result, ClientHello))

    @settings(max_examples=500)
    @given(st.integers(0, len(HELLO) - 1), st.integers(0, 255))
    def test_flipped_bytes_never_crash(self, position, value):
        data = bytearray(HELLO)
        data[position] = value
        try:
            result = read_server_name(bytes(data))
        except HelloError:
            return
        if result is not None:
            self.assertIsInstance(result.server_name, str)

    def test_http_request(self):
        self.assertRefused(b"GET / HTTP/1.1\r\n", "not a TLS handshake record")

    def test_not_a_client_hello(self):
        self.assertRefused(records(b"\x02" + HELLO[6:], []), "not a ClientHello")

    def test_oversized_hello_refused_from_its_header(self):
        header = b"\x01" + (MAX_HELLO + 1).to_bytes(3, "big")
        self.assertRefused(records(header, []), "larger than")

    def test_zero_length_record(self):
        self.assertRefused(b"\x16\x03\x01\x00\x00", "record length")

    def test_sslv2_like_version(self):
        self.assertRefused(b"\x16\x02\x00", "TLS 1.x")

    def test_trailing_dot(self):
        self.assertRefused(records(hello_message(b"a.example."), []), "DNS name")

    def test_binary_name(self):
        self.assertRefused(records(hello_message(b"a\x00b.example"), []), "DNS name")

    def test_too_long_name(self):
        name = b"a" * 254
        self.assertRefused(records(hello_message(name), []), "DNS name")

    def test_repeated_extension(self):
        again = struct.pack("!HH", 0, 0)
        self.assertRefused(records(hello_message(b"a.example", again), []), "repeated")

    def test_extensions_length_mismatch(self):
        message = bytearray(hello_message(b"a.example"))
        message += b"\x00"  # one byte after the extensions
        length = int.from_bytes(message[1:4], "big") + 1
        message[1:4] = length.to_bytes(3, "big")
        self.assertRefused(records(bytes(message), []), "after the extensions")

    def test_truncated_message(self):
        message = hello_message(b"a.example")
        short = message[:1] + (len(message) - 4).to_bytes(3, "big") + message[4:-3]
        message = short[:1] + (len(short) - 4).to_bytes(3, "big") + short[4:]
        self.assertRefused(records(message, []), "truncated")
