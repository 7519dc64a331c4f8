# -*- test-case-name: tests.unit.test_framing -*-
"""
Tests for labrelay.protocol.framing: frp's v1 frame (type byte, int64
big-endian length, JSON body), the incremental MessageParser and its limits.
"""

import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import ProtocolError
from labrelay.protocol import messages as m
from labrelay.protocol.framing import (
    HEADER_LENGTH,
    MAX_BODY_LENGTH,
    V2_MAGIC,
    MessageParser,
    decode_body,
    encode_message,
)

from ..support import vectors


def frame(type_byte: bytes, body: bytes, length: int = None) -> bytes:
    """A frame with an arbitrary (possibly lying) length field."""
    if length is None:
        length = len(body)
    return type_byte + struct.pack(">q", length) + body


def parse_all(data: bytes) -> list:
    """Every message in *data*, which must end on a frame boundary."""
    parser = MessageParser()
    parser.feed(data)
    found = list(parser.messages())
    if parser.buffered:
        raise AssertionError(f"{parser.buffered} bytes left undecoded")
    return found


def parse_one(type_byte: bytes, body: bytes):
    """Decode a single frame holding *body*."""
    parser = MessageParser()
    parser.feed(frame(type_byte, body))
    return parser.next_message()


#: One message of every type frp v1 registers, every field set.
SAMPLES = [
    m.Login(
        version="0.70.0",
        hostname="vm",
        os="linux",
        arch="amd64",
        user="alice",
        privilege_key="f20bd102fb09a9e23132944437c32bd8",
        timestamp=1795905300,
        run_id="2e2cae4720dc7973",
        client_id="c1",
        metas={"k": "v"},
        client_spec={"type": "ssh-tunnel"},
        pool_count=3,
    ),
    m.LoginResp(version="0.70.0", run_id="2e2cae4720dc7973", error="no"),
    m.NewProxy(
        proxy_name="web",
        proxy_type="http",
        use_encryption=True,
        use_compression=True,
        bandwidth_limit="1MB",
        bandwidth_limit_mode="server",
        group="g",
        group_key="gk",
        metas={"a": "b"},
        annotations={"c": "d"},
        remote_port=6000,
        custom_domains=["a.example", "b.example"],
        subdomain="s",
        locations=["/", "/api"],
        http_user="u",
        http_pwd="p",
        host_header_rewrite="h",
        headers={"X-A": "1"},
        response_headers={"X-B": "2"},
        route_by_http_user="u",
        sk="secret",
        allow_users=["*"],
        multiplexer="httpconnect",
    ),
    m.NewProxyResp(proxy_name="ssh", remote_addr=":27022", error="e"),
    m.CloseProxy(proxy_name="ssh"),
    m.NewWorkConn(run_id="r", privilege_key="k", timestamp=1),
    m.ReqWorkConn(),
    m.StartWorkConn(
        proxy_name="ssh",
        src_addr="127.0.0.1",
        dst_addr="127.0.0.1",
        src_port=51248,
        dst_port=27022,
        error="e",
    ),
    m.NewVisitorConn(
        run_id="r",
        proxy_name="p",
        sign_key="s",
        timestamp=2,
        use_encryption=True,
        use_compression=True,
    ),
    m.NewVisitorConnResp(proxy_name="p", error="e"),
    m.Ping(privilege_key="k", timestamp=3),
    m.Pong(error="e"),
    m.UDPPacket(
        c="aGVsbG8=",
        l={"IP": "1.2.3.4", "Port": 53, "Zone": ""},
        r={"IP": "::1", "Port": 5353, "Zone": ""},
    ),
    m.NatHoleVisitor(
        transaction_id="t",
        proxy_name="p",
        pre_check=True,
        protocol="quic",
        sign_key="s",
        timestamp=4,
        mapped_addrs=["1.1.1.1:1"],
        assisted_addrs=["2.2.2.2:2"],
    ),
    m.NatHoleClient(
        transaction_id="t",
        proxy_name="p",
        sid="s",
        mapped_addrs=["1.1.1.1:1"],
        assisted_addrs=["x"],
    ),
    m.NatHoleResp(
        transaction_id="t",
        sid="s",
        protocol="kcp",
        candidate_addrs=["c"],
        assisted_addrs=["a"],
        detect_behavior={"role": "sender", "mode": 1, "ttl": 7},
        error="e",
    ),
    m.NatHoleSid(transaction_id="t", sid="s", response=True, nonce="n"),
    m.NatHoleReport(sid="s", success=True),
]


class WorkedExampleTests(SynchronousTestCase):
    """frp's framing (golib ``msg/json``): a worked example and the layout."""

    def test_req_work_conn_bytes(self):
        """ReqWorkConn encodes to exactly 72 00..02 7b 7d."""
        self.assertEqual(
            encode_message(m.ReqWorkConn()), bytes.fromhex("7200000000000000027b7d")
        )

    def test_req_work_conn_decodes(self):
        """The worked example's bytes decode to a ReqWorkConn."""
        self.assertEqual(
            parse_all(bytes.fromhex("7200000000000000027b7d")), [m.ReqWorkConn()]
        )

    def test_empty_messages_are_eleven_bytes(self):
        """Ping and Pong without fields are 11-byte frames with body {}."""
        self.assertEqual(encode_message(m.Ping()), b"h" + bytes(7) + b"\x02{}")
        self.assertEqual(encode_message(m.Pong()), b"4" + bytes(7) + b"\x02{}")

    def test_length_is_big_endian_int64(self):
        """The length field is the body length as a big-endian int64."""
        data = encode_message(m.CloseProxy(proxy_name="x" * 300))
        self.assertEqual(HEADER_LENGTH, 9)
        (length,) = struct.unpack(">q", data[1:9])
        self.assertEqual(length, len(data) - 9)
        self.assertEqual(data[1:9], (len(data) - 9).to_bytes(8, "big"))


class RoundTripTests(SynchronousTestCase):
    """Encoding then parsing gives back the same message."""

    def test_samples_cover_every_type(self):
        """The samples hold one message of each registered type."""
        self.assertEqual(sorted(s.type_byte for s in SAMPLES), sorted(m.MESSAGE_TYPES))

    def test_every_type_round_trips(self):
        """Each message type survives encode_message then MessageParser."""
        for sample in SAMPLES:
            with self.subTest(sample.name):
                decoded = parse_all(encode_message(sample))
                self.assertEqual(decoded, [sample])
                self.assertIs(type(decoded[0]), type(sample))

    def test_every_type_round_trips_empty(self):
        """Each message type without fields survives a round trip."""
        for cls in m.MESSAGE_TYPES.values():
            with self.subTest(cls.__name__):
                self.assertEqual(parse_all(encode_message(cls())), [cls()])

    def test_type_byte_on_the_wire(self):
        """The first byte of each encoded frame is the class's type byte."""
        for sample in SAMPLES:
            with self.subTest(sample.name):
                self.assertEqual(encode_message(sample)[:1], type(sample).TYPE_BYTE)


class SplitAndMergeTests(SynchronousTestCase):
    """Frames arrive in arbitrary pieces and are decoded all the same."""

    STREAM = b"".join(encode_message(s) for s in SAMPLES[:6])

    def test_merged(self):
        """Several frames in one chunk all decode, in order."""
        self.assertEqual(parse_all(self.STREAM), SAMPLES[:6])

    def test_split_at_every_boundary(self):
        """Cutting the stream in two at any byte gives the same messages."""
        for cut in range(len(self.STREAM) + 1):
            parser = MessageParser()
            parser.feed(self.STREAM[:cut])
            found = list(parser.messages())
            parser.feed(self.STREAM[cut:])
            found.extend(parser.messages())
            self.assertEqual(found, SAMPLES[:6], f"cut at {cut}")
            self.assertEqual(parser.buffered, 0)

    def test_byte_by_byte(self):
        """Feeding one byte at a time yields each message when it completes."""
        parser = MessageParser()
        found = []
        ends = []
        for position in range(len(self.STREAM)):
            parser.feed(self.STREAM[position : position + 1])
            new = list(parser.messages())
            if new:
                ends.append(position + 1)
            found.extend(new)
        self.assertEqual(found, SAMPLES[:6])
        expected_ends, total = [], 0
        for sample in SAMPLES[:6]:
            total += len(encode_message(sample))
            expected_ends.append(total)
        self.assertEqual(ends, expected_ends)

    def test_truncated_frame_waits(self):
        """A frame missing its last byte gives None and keeps every byte."""
        data = encode_message(SAMPLES[0])
        parser = MessageParser()
        parser.feed(data[:-1])
        self.assertIsNone(parser.next_message())
        self.assertEqual(parser.buffered, len(data) - 1)
        parser.feed(data[-1:])
        self.assertEqual(parser.next_message(), SAMPLES[0])

    def test_partial_header_waits(self):
        """Fewer than nine header bytes give None."""
        for cut in range(1, HEADER_LENGTH):
            parser = MessageParser()
            parser.feed(b"r" + bytes(8)[: cut - 1])
            self.assertIsNone(parser.next_message())
            self.assertEqual(parser.buffered, cut)

    def test_empty_parser(self):
        """A parser that was fed nothing has no message."""
        self.assertIsNone(MessageParser().next_message())

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=8), st.data())
    def test_arbitrary_splits(self, chosen, data):
        """Any sequence of frames cut anywhere decodes to that sequence."""
        stream = b"".join(encode_message(s) for s in chosen)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
        parser = MessageParser()
        found = []
        previous = 0
        for cut in cuts + [len(stream)]:
            parser.feed(stream[previous:cut])
            found.extend(parser.messages())
            previous = cut
        self.assertEqual(found, chosen)
        self.assertEqual(parser.buffered, 0)


class TakeRestTests(SynchronousTestCase):
    """The parser never consumes bytes that belong to the next layer."""

    def test_login_resp_then_ciphertext(self):
        """After LoginResp, take_rest returns exactly the IV and ciphertext."""
        # The real s2c stream: LoginResp (57 bytes) then IV + ciphertext.
        data = vectors.stream_bytes(vectors.PLAIN_NOMUX, "conn-01", "s2c")
        parser = MessageParser()
        parser.feed(data)
        first = parser.next_message()
        self.assertIsInstance(first, m.LoginResp)
        self.assertEqual(parser.buffered, len(data) - 57)
        rest = parser.take_rest()
        self.assertEqual(rest, data[57:])
        self.assertEqual(rest[:16].hex(), "4459cfe3c6e4736ac60a1d4b229a94bf")
        self.assertEqual(parser.buffered, 0)
        self.assertEqual(parser.take_rest(), b"")

    def test_start_work_conn_then_payload(self):
        """After StartWorkConn, take_rest returns exactly the user payload."""
        head = encode_message(m.StartWorkConn(proxy_name="ssh"))
        payload = b"r" + bytes(7) + b"\x02{}" + b"\xff" * 100
        parser = MessageParser()
        parser.feed(head + payload)
        self.assertEqual(parser.next_message(), m.StartWorkConn(proxy_name="ssh"))
        self.assertEqual(parser.take_rest(), payload)

    def test_take_rest_of_partial_frame(self):
        """take_rest hands back a partial frame unchanged and resets."""
        data = encode_message(SAMPLES[1])
        parser = MessageParser()
        parser.feed(data[:5])
        self.assertIsNone(parser.next_message())
        self.assertEqual(parser.take_rest(), data[:5])
        parser.feed(data)
        self.assertEqual(parser.next_message(), SAMPLES[1])


class BadFrameTests(SynchronousTestCase):
    """Frames frp would refuse raise ProtocolError."""

    def assertRefused(self, data: bytes, *fragments: str):
        parser = MessageParser()
        parser.feed(data)
        error = self.assertRaises(ProtocolError, parser.next_message)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_unknown_type_byte(self):
        """A type byte frp does not register is refused at once."""
        for type_byte in (b"z", b"d", b"\x00", b"\xff", b"O", b"R"):
            with self.subTest(type_byte):
                self.assertRefused(type_byte, "type")

    def test_negative_length(self):
        """A negative length is refused."""
        self.assertRefused(frame(b"r", b"{}", length=-1), "negative")
        self.assertRefused(frame(b"r", b"", length=-(2**63)), "negative")

    def test_length_over_limit(self):
        """A length of 10241 is refused before any body byte arrives."""
        self.assertEqual(MAX_BODY_LENGTH, 10240)
        self.assertRefused(frame(b"p", b"", length=10241), "10241")
        self.assertRefused(frame(b"p", b"", length=2**63 - 1), "limit")

    def test_length_at_limit(self):
        """A body of exactly 10240 bytes is accepted."""
        body = b'{"proxy_name":"' + b"x" * (10240 - 17) + b'"}'
        self.assertEqual(len(body), 10240)
        parser = MessageParser()
        parser.feed(frame(b"p", body))
        self.assertEqual(parser.next_message(), m.NewProxy(proxy_name="x" * 10223))

    def test_custom_limit(self):
        """A parser built with a smaller limit enforces it."""
        parser = MessageParser(max_body_length=10)
        parser.feed(frame(b"c", b'{"proxy_name":"x"}'))
        self.assertRaises(ProtocolError, parser.next_message)

    def test_non_object_json(self):
        """A body that is a JSON list, string, number or null is refused."""
        for body in (b"[]", b'"x"', b"1", b"1.5", b"null", b"true"):
            with self.subTest(body):
                self.assertRefused(frame(b"r", body), "not an object")

    def test_invalid_json(self):
        """A body that is not JSON is refused."""
        for body in (b"", b"{", b"{'a':1}", b"{}x", b'{"a":}', b"\x00"):
            with self.subTest(body):
                self.assertRefused(frame(b"r", body), "JSON")

    def test_invalid_utf8(self):
        """A body that is not UTF-8 is refused."""
        self.assertRefused(frame(b"c", b'{"proxy_name":"\xff\xfe"}'))
        self.assertRefused(frame(b"c", b'{"proxy_name":"\xed\xa0\x80"}'))

    def test_refused_frame_is_consumed(self):
        """A frame whose body is refused is dropped; the next one decodes."""
        parser = MessageParser()
        parser.feed(frame(b"r", b"[]") + encode_message(m.Pong()))
        self.assertRaises(ProtocolError, parser.next_message)
        self.assertEqual(parser.next_message(), m.Pong())

    def test_wrong_field_types(self):
        """Values of the wrong JSON type are refused, as Go refuses them."""
        cases = [
            (b"o", {"timestamp": "1700000000"}),  # string for int
            (b"o", {"timestamp": 1.5}),  # float for int
            (b"o", {"pool_count": 1.0}),  # float for int
            (b"o", {"pool_count": True}),  # bool for int
            (b"o", {"timestamp": 2**63}),  # out of int64
            (b"o", {"version": 7}),  # number for string
            (b"o", {"metas": {"a": 1}}),  # non-string map value
            (b"o", {"metas": ["a"]}),  # list for map
            (b"o", {"client_spec": []}),  # list for object
            (b"p", {"custom_domains": [1, 2]}),  # list of non-strings
            (b"p", {"custom_domains": "a.example"}),  # string for list
            (b"p", {"use_encryption": "true"}),  # string for bool
            (b"p", {"use_encryption": 1}),  # number for bool
            (b"2", {"error": {}}),  # object for string
        ]
        for type_byte, value in cases:
            with self.subTest(value):
                self.assertRefused(
                    frame(type_byte, json.dumps(value).encode()), "field"
                )

    def test_decode_body_directly(self):
        """decode_body refuses a non-object body without a parser."""
        self.assertRaises(ProtocolError, decode_body, b"r", b"[1]")
        self.assertEqual(decode_body(b"r", b"{}"), m.ReqWorkConn())


class LenientDecodingTests(SynchronousTestCase):
    """What Go's encoding/json tolerates, the parser tolerates too."""

    def test_unknown_keys_ignored(self):
        """Keys the message does not have are ignored."""
        decoded = parse_one(
            b"1",
            b'{"version":"0.47.0","server_udp_port":7001,'
            b'"run_id":"ab","extra":{"x":[1,2]}}',
        )
        self.assertEqual(decoded, m.LoginResp(version="0.47.0", run_id="ab"))

    def test_keys_match_case_insensitively(self):
        """Keys match their field whatever their ASCII case."""
        decoded = parse_one(
            b"p",
            b'{"PROXY_NAME":"ssh","Proxy_Type":"tcp",'
            b'"remote_PORT":22,"Use_Encryption":true}',
        )
        self.assertEqual(
            decoded,
            m.NewProxy(
                proxy_name="ssh", proxy_type="tcp", remote_port=22, use_encryption=True
            ),
        )

    def test_last_key_wins(self):
        """When two keys fold to one field, the later one wins, as in Go."""
        decoded = parse_one(b"c", b'{"proxy_name":"a","PROXY_NAME":"b"}')
        self.assertEqual(decoded.proxy_name, "b")

    def test_null_is_zero(self):
        """A JSON null leaves the field at its zero value."""
        decoded = parse_one(b"o", b'{"version":null,"timestamp":null,"metas":null}')
        self.assertEqual(decoded, m.Login())

    def test_missing_keys_are_zero(self):
        """Absent keys take zero values."""
        decoded = parse_one(b"s", b"{}")
        self.assertEqual((decoded.proxy_name, decoded.src_port), ("", 0))

    def test_whitespace_accepted(self):
        """Non-compact JSON (as older peers might write) is accepted."""
        decoded = parse_one(b"c", b' { "proxy_name" : "x" } \n')
        self.assertEqual(decoded, m.CloseProxy(proxy_name="x"))

    def test_old_frp_always_sends_every_field(self):
        """A pre-omitempty body with empty values decodes to zero values."""
        decoded = parse_one(b"1", b'{"version":"0.43.0","run_id":"","error":""}')
        self.assertEqual(decoded, m.LoginResp(version="0.43.0"))


class V2MagicTests(SynchronousTestCase):
    """frp's opt-in wire protocol v2 is recognised and refused clearly."""

    def test_magic_refused_mentioning_v2(self):
        """The 7-byte v2 magic gives a ProtocolError that names v2."""
        self.assertEqual(V2_MAGIC, b"FRP\x00\x02\r\n")
        parser = MessageParser()
        parser.feed(V2_MAGIC + b"\x00\x01\x00\x00\x00\x00\x00\x10")
        error = self.assertRaises(ProtocolError, parser.next_message)
        self.assertIn("v2", str(error))

    def test_magic_prefix_waits(self):
        """Each proper prefix of the magic waits for more bytes."""
        parser = MessageParser()
        for position in range(len(V2_MAGIC) - 1):
            parser.feed(V2_MAGIC[position : position + 1])
            self.assertIsNone(parser.next_message())
        parser.feed(V2_MAGIC[-1:])
        self.assertIn("v2", str(self.assertRaises(ProtocolError, parser.next_message)))

    def test_near_magic_is_unknown_type(self):
        """An F that does not continue as the magic is an unknown type."""
        parser = MessageParser()
        parser.feed(b"FRX")
        error = self.assertRaises(ProtocolError, parser.next_message)
        self.assertNotIn("v2", str(error))


class EncodeLimitTests(SynchronousTestCase):
    """encode_message refuses what the peer would refuse."""

    def test_over_limit_refused(self):
        """A body of 10241 bytes is refused by the encoder."""
        message = m.NewProxy(proxy_name="x" * 10224)
        self.assertEqual(len(message.to_json_bytes()), 10241)
        error = self.assertRaises(ProtocolError, encode_message, message)
        self.assertIn("10240", str(error))

    def test_at_limit_accepted(self):
        """A body of exactly 10240 bytes is encoded."""
        message = m.NewProxy(proxy_name="x" * 10223)
        self.assertEqual(len(encode_message(message)), 10240 + 9)

    def test_limit_counts_bytes_not_characters(self):
        """The limit applies to UTF-8 bytes, not to characters."""
        message = m.CloseProxy(proxy_name="é" * 5200)  # 10400 bytes
        self.assertRaises(ProtocolError, encode_message, message)


def _drain(parser: MessageParser) -> list:
    found = []
    while True:
        message = parser.next_message()
        if message is None:
            return found
        found.append(message)


_frames = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([encode_message(s) for s in SAMPLES]),
    st.builds(
        lambda t, n, body: t + struct.pack(">q", n) + body,
        st.sampled_from(sorted(m.MESSAGE_TYPES) + [b"F", b"z"]),
        st.one_of(
            st.integers(-5, 60),
            st.integers(10230, 10250),
            st.integers(-(2**63), 2**63 - 1),
        ),
        st.binary(max_size=60),
    ),
    st.just(V2_MAGIC),
    st.just(b"p" + struct.pack(">q", 10240)),
    st.binary(min_size=4000, max_size=4000),
)


class FuzzTests(SynchronousTestCase):
    """Hostile input only ever raises ProtocolError, and memory is bounded."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_frames, max_size=10), st.data())
    def test_only_protocol_errors(self, pieces, data):
        """Arbitrary bytes in arbitrary splits raise nothing but ProtocolError."""
        stream = b"".join(pieces)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        parser = MessageParser()
        previous = 0
        try:
            for cut in cuts + [len(stream)]:
                parser.feed(stream[previous:cut])
                previous = cut
                for message in _drain(parser):
                    self.assertIn(message.type_byte, m.MESSAGE_TYPES)
        except ProtocolError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.sampled_from([encode_message(s) for s in SAMPLES]),
                st.builds(
                    lambda n, fill: b"p" + struct.pack(">q", n) + fill,
                    st.integers(0, MAX_BODY_LENGTH),
                    st.binary(max_size=3000),
                ),
                st.binary(max_size=3000),
            ),
            max_size=12,
        )
    )
    def test_undecoded_bytes_bounded(self, chunks):
        """After draining without error, at most one frame (≤ 10249 bytes) is held."""
        parser = MessageParser()
        try:
            for chunk in chunks:
                parser.feed(chunk)
                _drain(parser)
                self.assertLessEqual(parser.buffered, MAX_BODY_LENGTH + HEADER_LENGTH)
        except ProtocolError:
            pass

    def test_largest_partial_frame_held(self):
        """A frame one byte short of the maximum is held whole, no more."""
        parser = MessageParser()
        parser.feed(
            b"p" + struct.pack(">q", MAX_BODY_LENGTH) + b" " * (MAX_BODY_LENGTH - 1)
        )
        self.assertIsNone(parser.next_message())
        self.assertEqual(parser.buffered, MAX_BODY_LENGTH + HEADER_LENGTH - 1)
        parser.feed(b"x")
        # The completed body is 10240 bytes of spaces and an "x": invalid JSON.
        self.assertRaises(ProtocolError, parser.next_message)
        self.assertEqual(parser.buffered, 0)

    def test_deeply_nested_json_is_protocol_error(self):
        """A body of deeply nested arrays raises ProtocolError, not RecursionError."""
        parser = MessageParser()
        parser.feed(frame(b"u", b'{"l":' + b"[" * 5000 + b"]" * 5000 + b"}"))
        self.assertRaises(ProtocolError, parser.next_message)
