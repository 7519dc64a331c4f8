# -*- test-case-name: tests.unit.test_messages -*-
"""
Tests for labrelay.protocol.messages: frp's JSON field names, Go's omitempty
and string escaping, and decoding with Go's encoding/json rules.
"""

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import ProtocolError
from labrelay.protocol import messages as m
from labrelay.protocol.framing import (
    MAX_BODY_LENGTH,
    MessageParser,
    encode_message,
)

from ..support import vectors


class TypeTableTests(SynchronousTestCase):
    """The registry holds frp v1's type bytes and nothing else."""

    def test_type_bytes(self):
        """Every v1 type byte maps to the message frp's ``pkg/msg`` names."""
        expected = {
            b"o": "Login",
            b"1": "LoginResp",
            b"p": "NewProxy",
            b"2": "NewProxyResp",
            b"c": "CloseProxy",
            b"w": "NewWorkConn",
            b"r": "ReqWorkConn",
            b"s": "StartWorkConn",
            b"v": "NewVisitorConn",
            b"3": "NewVisitorConnResp",
            b"h": "Ping",
            b"4": "Pong",
            b"u": "UDPPacket",
            b"i": "NatHoleVisitor",
            b"n": "NatHoleClient",
            b"m": "NatHoleResp",
            b"5": "NatHoleSid",
            b"6": "NatHoleReport",
        }
        self.assertEqual(
            {t: cls.__name__ for t, cls in m.MESSAGE_TYPES.items()}, expected
        )

    def test_removed_type_absent(self):
        """NatHoleClientDetectOK ('d'), removed in frp v0.48, is not registered."""
        self.assertNotIn(b"d", m.MESSAGE_TYPES)

    def test_unknown_field_refused_by_constructor(self):
        """Building a message with a field it lacks is a TypeError."""
        self.assertRaises(TypeError, m.Ping, proxy_name="x")


class OmitEmptyTests(SynchronousTestCase):
    """Zero values are left out, as Go's omitempty leaves them out."""

    def test_zero_values_omitted(self):
        """false, 0, "", empty lists and empty maps are all omitted."""
        message = m.NewProxy(
            proxy_name="",
            proxy_type="",
            use_encryption=False,
            remote_port=0,
            custom_domains=[],
            metas={},
            headers={},
        )
        self.assertEqual(message.to_json_bytes(), b"{}")

    def test_set_values_kept(self):
        """true, non-zero numbers and non-empty collections are written."""
        message = m.NewProxy(
            use_encryption=True, remote_port=1, custom_domains=["a"], metas={"k": ""}
        )
        self.assertEqual(
            json.loads(message.to_json_bytes()),
            {
                "use_encryption": True,
                "remote_port": 1,
                "custom_domains": ["a"],
                "metas": {"k": ""},
            },
        )

    def test_empty_messages(self):
        """Messages without set fields encode as {}."""
        for cls in (
            m.ReqWorkConn,
            m.Ping,
            m.Pong,
            m.NewWorkConn,
            m.StartWorkConn,
            m.LoginResp,
            m.CloseProxy,
        ):
            with self.subTest(cls.__name__):
                self.assertEqual(cls().to_json_bytes(), b"{}")

    def test_negative_numbers_kept(self):
        """A negative number is not a zero value and is written."""
        self.assertEqual(m.Ping(timestamp=-1).to_json_bytes(), b'{"timestamp":-1}')

    def test_client_spec_always_present(self):
        """Login always carries client_spec, as {} when empty."""
        self.assertEqual(m.Login().to_json_bytes(), b'{"client_spec":{}}')
        self.assertEqual(m.Login(client_spec={}).to_dict(), {"client_spec": {}})
        self.assertEqual(m.Login(client_spec=None).to_dict(), {"client_spec": {}})

    def test_detect_behavior_always_present(self):
        """NatHoleResp always carries detect_behavior, as Go writes structs."""
        self.assertEqual(m.NatHoleResp().to_json_bytes(), b'{"detect_behavior":{}}')

    def test_login_as_frpc_writes_it(self):
        """A Login like frpc 0.70's encodes to frpc's exact bytes."""
        login = m.Login(
            version="0.70.0",
            hostname="vm",
            os="linux",
            arch="amd64",
            privilege_key="f20bd102fb09a9e23132944437c32bd8",
            timestamp=1795905300,
            pool_count=1,
        )
        self.assertEqual(
            login.to_json_bytes(),
            b'{"version":"0.70.0","hostname":"vm","os":"linux",'
            b'"arch":"amd64","privilege_key":"f20bd102fb09a9e23132944437c32bd8",'
            b'"timestamp":1795905300,"client_spec":{},"pool_count":1}',
        )

    def test_empty_values_equal_defaults(self):
        """A message built with explicit zero values equals a bare one."""
        self.assertEqual(m.NewProxy(proxy_name="", remote_port=0), m.NewProxy())
        self.assertNotEqual(m.NewProxy(remote_port=1), m.NewProxy())
        self.assertNotEqual(m.Ping(), m.Pong())


class CapturedBodyTests(SynchronousTestCase):
    """The bodies frp 0.70 wrote in the captures, reproduced byte for byte."""

    def test_new_proxy_bodies(self):
        """The three NewProxy bodies of vectors README §4.2 encode exactly."""
        cases = [
            (
                m.NewProxy(
                    proxy_name="jupyter", proxy_type="http", subdomain="jupyter"
                ),
                b'{"proxy_name":"jupyter","proxy_type":"http","subdomain":"jupyter"}',
            ),
            (
                m.NewProxy(proxy_name="ssh", proxy_type="tcp", remote_port=27022),
                b'{"proxy_name":"ssh","proxy_type":"tcp","remote_port":27022}',
            ),
            (
                m.NewProxy(
                    proxy_name="ssh-enc",
                    proxy_type="tcp",
                    use_encryption=True,
                    use_compression=True,
                    remote_port=27023,
                ),
                b'{"proxy_name":"ssh-enc","proxy_type":"tcp",'
                b'"use_encryption":true,"use_compression":true,'
                b'"remote_port":27023}',
            ),
        ]
        for message, body in cases:
            with self.subTest(message.proxy_name):
                self.assertEqual(message.to_json_bytes(), body)

    def test_new_proxy_resp_bodies(self):
        """The three NewProxyResp bodies of vectors README §4.2 encode exactly."""
        cases = [
            (
                m.NewProxyResp(proxy_name="ssh", remote_addr=":27022"),
                b'{"proxy_name":"ssh","remote_addr":":27022"}',
            ),
            (
                m.NewProxyResp(proxy_name="ssh-enc", remote_addr=":27023"),
                b'{"proxy_name":"ssh-enc","remote_addr":":27023"}',
            ),
            (
                m.NewProxyResp(
                    proxy_name="jupyter", remote_addr="jupyter.web.example.test:27080"
                ),
                b'{"proxy_name":"jupyter",'
                b'"remote_addr":"jupyter.web.example.test:27080"}',
            ),
        ]
        for message, body in cases:
            with self.subTest(message.proxy_name):
                self.assertEqual(message.to_json_bytes(), body)

    def test_start_work_conn_bodies(self):
        """StartWorkConn for tcp and http encodes as frps wrote it."""
        self.assertEqual(
            m.StartWorkConn(
                proxy_name="ssh",
                src_addr="127.0.0.1",
                dst_addr="127.0.0.1",
                src_port=51248,
                dst_port=27022,
            ).to_json_bytes(),
            b'{"proxy_name":"ssh","src_addr":"127.0.0.1",'
            b'"dst_addr":"127.0.0.1","src_port":51248,"dst_port":27022}',
        )
        self.assertEqual(
            m.StartWorkConn(
                proxy_name="jupyter", src_addr="127.0.0.1", src_port=57324
            ).to_json_bytes(),
            b'{"proxy_name":"jupyter","src_addr":"127.0.0.1","src_port":57324}',
        )

    def test_login_resp_bodies(self):
        """LoginResp for success and for a bad token encodes as frps wrote it."""
        self.assertEqual(
            m.LoginResp(version="0.70.0", run_id="2e2cae4720dc7973").to_json_bytes(),
            b'{"version":"0.70.0","run_id":"2e2cae4720dc7973"}',
        )
        self.assertEqual(
            m.LoginResp(
                version="0.70.0",
                error=("token in login doesn't match token from configuration"),
            ).to_json_bytes(),
            b'{"version":"0.70.0","error":"token in login doesn\'t match '
            b'token from configuration"}',
        )

    def test_every_captured_body_reencodes(self):
        """Every body in every messages.json decodes and re-encodes to frp's bytes."""
        count = 0
        for scenario in vectors.SCENARIOS:
            for document, _ in vectors.documents(scenario):
                for direction in vectors.DIRECTIONS:
                    for entry in document[direction]["messages"]:
                        raw = entry["raw_json"].encode("utf-8")
                        message = m.message_from_json(
                            entry["type"].encode("ascii"), json.loads(raw)
                        )
                        self.assertEqual(message.name, entry["name"])
                        self.assertEqual(message.to_json_bytes(), raw)
                        self.assertEqual(message.to_dict(), entry["body"])
                        count += 1
        self.assertEqual(count, 42)  # every frame of the three captures


class GoEscapingTests(SynchronousTestCase):
    """Strings are escaped the way Go's encoding/json escapes them."""

    def test_html_characters_escaped(self):
        """<, > and & are written as \\u003c, \\u003e and \\u0026."""
        self.assertEqual(
            m.CloseProxy(proxy_name="<a&b>").to_json_bytes(),
            b'{"proxy_name":"\\u003ca\\u0026b\\u003e"}',
        )

    def test_escaping_in_map_keys_and_lists(self):
        """Escaping applies inside map keys, map values and list items."""
        body = m.NewProxy(headers={"<k>": "&"}, locations=["/a<b"]).to_json_bytes()
        self.assertIn(b'"\\u003ck\\u003e":"\\u0026"', body)
        self.assertIn(b'["/a\\u003cb"]', body)
        self.assertNotIn(b"<", body)

    def test_line_separators_escaped(self):
        """U+2028 and U+2029 are escaped, as Go escapes them."""
        self.assertEqual(
            m.Pong(error="a\u2028b\u2029").to_json_bytes(),
            b'{"error":"a\\u2028b\\u2029"}',
        )

    def test_non_ascii_written_raw(self):
        """Other non-ASCII text is written as raw UTF-8, as Go does."""
        self.assertEqual(
            m.Pong(error="é€😀").to_json_bytes(), '{"error":"é€😀"}'.encode()
        )

    def test_control_characters(self):
        """Quotes, backslashes and control characters use Go's escapes."""
        self.assertEqual(
            m.Pong(error='"\\\n\r\t\x01\x7f').to_json_bytes(),
            b'{"error":"\\"\\\\\\n\\r\\t\\u0001\x7f"}',
        )

    def test_escaped_text_decodes_back(self):
        """What the escaper writes decodes to the original text."""
        text = '<&>\u2028\\u003c"é'
        body = m.Pong(error=text).to_json_bytes()
        self.assertEqual(json.loads(body)["error"], text)


class FromJsonTests(SynchronousTestCase):
    """message_from_json applies Go's decoding rules."""

    def test_case_insensitive(self):
        """Keys match whatever their case."""
        self.assertEqual(
            m.message_from_json(b"w", {"RUN_ID": "r", "Timestamp": 5}),
            m.NewWorkConn(run_id="r", timestamp=5),
        )

    def test_unknown_keys(self):
        """Unknown keys are ignored."""
        self.assertEqual(m.message_from_json(b"4", {"error": "", "x": 1}), m.Pong())

    def test_wrong_types(self):
        """A wrong JSON type for a field raises ProtocolError."""
        for value in (
            {"timestamp": "1"},
            {"timestamp": 1.5},
            {"timestamp": False},
            {"privilege_key": 1},
        ):
            with self.subTest(value):
                self.assertRaises(ProtocolError, m.message_from_json, b"h", value)

    def test_int64_bounds(self):
        """The int64 extremes are accepted and one beyond is refused."""
        for value in (2**63 - 1, -(2**63)):
            self.assertEqual(
                m.message_from_json(b"h", {"timestamp": value}).timestamp, value
            )
        for value in (2**63, -(2**63) - 1):
            self.assertRaises(
                ProtocolError, m.message_from_json, b"h", {"timestamp": value}
            )

    def test_udp_packet_addresses(self):
        """UDPPacket keeps its address objects with Go's capitalised keys."""
        value = {"c": "aGk=", "r": {"IP": "1.2.3.4", "Port": 5353, "Zone": ""}}
        packet = m.message_from_json(b"u", value)
        self.assertEqual(packet.r, value["r"])
        self.assertEqual(json.loads(packet.to_json_bytes()), value)

    def test_go_unicode_case_folding(self):
        """Keys match under Go's Unicode folding too (ſ folds to s)."""
        self.assertEqual(m.message_from_json(b"n", {"\u017fid": "x"}).sid, "x")

    def test_port_fields_are_uint16(self):
        """StartWorkConn ports outside uint16 are refused, as Go refuses them."""
        for value in (-1, 65536):
            with self.subTest(value):
                self.assertRaises(
                    ProtocolError, m.message_from_json, b"s", {"src_port": value}
                )


class UnrepresentableTextTests(SynchronousTestCase):
    """JSON that Go would not turn into a message is not one here either."""

    def parse(self, body: bytes):
        parser = MessageParser()
        parser.feed(b"c" + len(body).to_bytes(8, "big") + body)
        return parser.next_message()

    def test_lone_surrogate_escape(self):
        """A lone surrogate escape is refused or yields an encodable message."""
        try:
            message = self.parse(b'{"proxy_name":"\\ud800"}')
        except ProtocolError:
            return
        self.assertIsInstance(encode_message(message), bytes)

    def test_nan_refused(self):
        """NaN and Infinity, which are not JSON, are refused."""
        for body in (b'{"x":NaN}', b'{"x":-Infinity}'):
            with self.subTest(body):
                self.assertRaises(ProtocolError, self.parse, body)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_int64 = st.integers(-(2**63), 2**63 - 1)
_VALUES = {
    m.STR: _text,
    m.INT: _int64,
    m.UINT16: st.integers(0, 65535),
    m.BOOL: st.booleans(),
    m.MAP: st.dictionaries(_text, _text, max_size=3),
    m.LIST: st.lists(_text, max_size=3),
    m.OBJECT: st.dictionaries(_text, st.one_of(_text, st.integers(-9, 9)), max_size=3),
    m.ANY: st.one_of(
        st.none(),
        _text,
        st.integers(-9, 9),
        st.fixed_dictionaries(
            {"IP": _text, "Port": st.integers(0, 65535), "Zone": _text}
        ),
    ),
}


@st.composite
def any_message(draw):
    cls = draw(
        st.sampled_from(sorted(m.MESSAGE_TYPES.values(), key=lambda c: c.TYPE_BYTE))
    )
    values = {}
    for key, kind in cls.FIELDS:
        if draw(st.booleans()):
            values[key] = draw(_VALUES[kind])
    return cls(**values)


class PropertyTests(SynchronousTestCase):
    """Round trips over arbitrary field values."""

    @settings(max_examples=200, deadline=None)
    @given(any_message())
    def test_round_trip(self, message):
        """Any message with any valid values survives encode and parse."""
        data = (
            encode_message(message)
            if len(message.to_json_bytes()) <= MAX_BODY_LENGTH
            else None
        )
        assume(data is not None)
        parser = MessageParser()
        parser.feed(data)
        decoded = parser.next_message()
        # Decoding gives zero values where omitempty dropped a field, so
        # compare what each side would write.
        self.assertEqual(decoded.to_dict(), message.to_dict())
        self.assertEqual(encode_message(decoded), data)

    @settings(max_examples=200, deadline=None)
    @given(any_message())
    def test_python_json_agrees(self, message):
        """The escaped body is valid JSON with the same value as to_dict."""
        self.assertEqual(json.loads(message.to_json_bytes()), message.to_dict())
