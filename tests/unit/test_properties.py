# -*- test-case-name: tests.unit.test_properties -*-
"""
Property-based tests of every decoder that reads bytes from the network or
text from a config file: whatever arrives, labrelay answers with its own
error type, a well-formed refusal or a close, and holds a bounded number of
bytes.

The drivers, the corpus of valid inputs (built from the frp captures in
``tests/data``) and the mutator are the fuzz targets of
:mod:`tests.support.fuzz`, which ``tools/fuzz.py`` runs for longer.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import ConfigError, parse_server_config
from labrelay.errors import ProtocolError
from labrelay.mux.frames import FLAG_SYN, TYPE_PING, encode_header
from labrelay.protocol import messages
from labrelay.protocol.crypto import IV_LENGTH, StreamDecryptor, derive_key

from ..support.fuzz.core import TOKEN, Target, chunked, inputs
from ..support.fuzz.decoders import TYPE_BYTES, MessagesTarget, frame
from ..support.fuzz.server import ServerWorld
from ..support.fuzz.targets import TARGETS
from ..support.fuzz.yamux import YamuxSessionTarget


def _property(target: Target, doc: str, examples: int = 250):
    """A test method running *target* on hypothesis inputs."""

    @settings(max_examples=examples, deadline=None)
    @given(inputs(target))
    def test(self, sample):
        target.run(*sample)

    test.__doc__ = doc
    return test


class DecoderProperties(SynchronousTestCase):
    """The sans-IO decoders on random and mutated captured input."""

    test_framing = _property(
        TARGETS["framing"],
        "MessageParser raises only ProtocolError and holds less than one "
        "maximal frame.",
    )

    test_messages = _property(
        TARGETS["messages"],
        "A JSON body decodes to a message that re-encodes to itself, or "
        "raises ProtocolError.",
    )

    test_codec = _property(
        TARGETS["codec"],
        "PayloadCodec.decode of any bytes raises only ProtocolError and "
        "holds at most one snappy chunk.",
    )

    test_yamux_frames = _property(
        TARGETS["yamux-frames"],
        "FrameParser raises only FrameError and holds less than one maximal frame.",
    )

    test_config = _property(
        TARGETS["config"],
        "Mutated frps.ini/frpc.ini texts parse or raise a one-line ConfigError.",
        200,
    )

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from(TYPE_BYTES),
        st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "Run_ID",
                    "privilege_key",
                    "timestamp",
                    "pool_count",
                    "metas",
                    "client_spec",
                    "proxy_name",
                    "remote_port",
                    "custom_domains",
                    "src_port",
                    "l",
                    "error",
                    "use_encryption",
                    "x",
                ]
            ),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=6,
        ),
    )
    def test_message_from_json(self, type_byte, value):
        """message_from_json of any JSON object gives a message or raises
        ProtocolError."""
        try:
            message = messages.message_from_json(type_byte, value)
        except ProtocolError:
            return
        self.assertEqual(message.type_byte, type_byte)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
    def test_decryptor_any_bytes(self, data, cuts):
        """StreamDecryptor takes any bytes in any pieces and returns all but
        the IV, holding at most one partial IV."""
        decryptor = StreamDecryptor(derive_key(TOKEN))
        out = b"".join(decryptor.decrypt(p) for p in chunked(data, cuts))
        self.assertEqual(len(out), max(len(data) - IV_LENGTH, 0))
        self.assertLess(len(decryptor._iv), IV_LENGTH)


class ProtocolProperties(SynchronousTestCase):
    """Whole protocols on memory transports, fed random and mutated input."""

    test_yamux_session = _property(
        YamuxSessionTarget(strict_paused_writes=False),
        "A yamux session never raises, keeps every buffer within a window "
        "and leaves no timer once lost.",
        200,
    )

    test_vhost = _property(
        TARGETS["vhost"],
        "A vhost connection answers well-formed HTTP responses or closes, "
        "holds at most one head and leaves no timer.",
        200,
    )

    test_server_plain = _property(
        TARGETS["server-plain"],
        "Any first bytes on the bind port leave the connection closed or "
        "waiting, with bounded buffers and well-formed replies.",
        200,
    )

    test_control = _property(
        TARGETS["control"],
        "Any plaintext on a logged-in control channel is handled or "
        "refused with a close, with bounded buffers.",
        200,
    )

    test_server_mux = _property(
        TARGETS["server-mux"],
        "Any bytes on a tcp_mux bind-port connection end in a close or a "
        "waiting session, with bounded buffers and no timer left.",
        150,
    )


class RegressionTests(SynchronousTestCase):
    """Fixed inputs for what the properties found."""

    def test_refused_connection_drops_further_input(self):
        """After refusing a visitor connection the server buffers nothing
        more of what the peer keeps sending (TLS delivers it)."""
        world = ServerWorld(mux=False)
        connection, wire = world.connect()
        connection.dataReceived(frame(b"v", b'{"proxy_name":"x"}'))
        self.assertTrue(wire.disconnecting)
        for _ in range(20):
            connection.dataReceived(b"o" * 10000)
        self.assertEqual(connection._parser.buffered, 0)
        world.finish()

    def test_config_error_on_one_line(self):
        """A template string escaping a newline gives a one-line error."""
        with self.assertRaises(ConfigError) as caught:
            parse_server_config('[common]\nbind_port = {{ "\\\n" }}\n')
        self.assertNotIn("\n", str(caught.exception))
        self.assertIn("invalid escape", str(caught.exception))

    def test_paused_transport_bounds_writes(self):
        """A peer that floods Pings and never reads does not make the
        session write without bound."""
        target = YamuxSessionTarget(strict_paused_writes=True)
        ping = encode_header(TYPE_PING, FLAG_SYN, 0, 7)
        target.run(b"\x01" + ping * 1000, [])

    def test_non_finite_number_refused(self):
        """A JSON number beyond float64 is refused, as Go refuses it, rather
        than decoded to inf and re-encoded as invalid JSON."""
        target = MessagesTarget()
        target.run(bytes([TYPE_BYTES.index(b"u")]) + b'{"l": 1e400}', [])
