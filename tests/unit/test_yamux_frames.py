"""
Tests for labrelay.mux.frames: the yamux header and the incremental parser,
including a real frp 0.70 capture (tests/data/plain-mux).
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import ProtocolError
from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_NAMES,
    FLAG_RST,
    FLAG_SYN,
    HEADER_SIZE,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_NAMES,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    Frame,
    FrameError,
    FrameParser,
    Header,
    decode_header,
    encode_header,
)

from ..support import paths

DATA = paths.DATA.child("plain-mux")


def frame_bytes(frame_type, flags, stream_id, length, payload=b""):
    return encode_header(frame_type, flags, stream_id, length) + payload


class HeaderTests(SynchronousTestCase):
    """encode_header / decode_header."""

    def test_layout(self):
        """The header is version, type, flags u16, stream id u32, length u32, big-endian."""
        self.assertEqual(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 6029312),
            bytes.fromhex("00 01 0001 00000001 005c0000"),
        )

    def test_round_trip_every_type_and_flag(self):
        """Every type with every flag combination decodes to what was encoded."""
        for frame_type in TYPE_NAMES:
            for flags in range(16):
                raw = encode_header(frame_type, flags, 0xFFFFFFFF, 123456)
                self.assertEqual(len(raw), HEADER_SIZE)
                self.assertEqual(
                    decode_header(raw), Header(frame_type, flags, 0xFFFFFFFF, 123456)
                )

    def test_bad_version(self):
        """A version other than 0 is a FrameError, which is a ProtocolError."""
        raw = b"\x01" + encode_header(TYPE_DATA, 0, 1, 0)[1:]
        e = self.assertRaises(FrameError, decode_header, raw)
        self.assertIsInstance(e, ProtocolError)
        self.assertIn("version 1", str(e))

    def test_bad_type(self):
        """An unknown frame type is a FrameError."""
        raw = b"\x00\x04" + encode_header(TYPE_DATA, 0, 1, 0)[2:]
        e = self.assertRaises(FrameError, decode_header, raw)
        self.assertIn("type 4", str(e))

    def test_encode_refuses_out_of_range(self):
        """Unknown types and values beyond u32 are refused when encoding."""
        self.assertRaises(ValueError, encode_header, 4, 0, 1, 0)
        self.assertRaises(ValueError, encode_header, TYPE_DATA, 0, 2**32, 0)
        self.assertRaises(ValueError, encode_header, TYPE_DATA, 0x10000, 1, 0)

    def test_describe(self):
        """describe() names the type and flags."""
        self.assertEqual(
            Header(TYPE_WINDOW_UPDATE, FLAG_ACK | FLAG_FIN, 3, 0).describe(),
            "WindowUpdate[ACK|FIN] stream=3 length=0",
        )


class ParserTests(SynchronousTestCase):
    """FrameParser.feed."""

    def test_all_types(self):
        """Data carries its payload; the other types carry none."""
        raw = (
            frame_bytes(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 100)
            + frame_bytes(TYPE_DATA, FLAG_FIN, 1, 5, b"hello")
            + frame_bytes(TYPE_PING, FLAG_ACK, 0, 7)
            + frame_bytes(TYPE_GO_AWAY, 0, 0, 2)
            + frame_bytes(TYPE_WINDOW_UPDATE, FLAG_RST, 3, 0)
        )
        self.assertEqual(
            FrameParser().feed(raw),
            [
                Frame(Header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 100)),
                Frame(Header(TYPE_DATA, FLAG_FIN, 1, 5), b"hello"),
                Frame(Header(TYPE_PING, FLAG_ACK, 0, 7)),
                Frame(Header(TYPE_GO_AWAY, 0, 0, 2)),
                Frame(Header(TYPE_WINDOW_UPDATE, FLAG_RST, 3, 0)),
            ],
        )

    def test_truncated_waits(self):
        """A partial header or payload yields nothing until the rest arrives."""
        raw = frame_bytes(TYPE_DATA, 0, 1, 10, b"0123456789")
        parser = FrameParser()
        self.assertEqual(parser.feed(raw[:5]), [])
        self.assertEqual(parser.feed(raw[5:15]), [])
        self.assertEqual(parser.buffered, 15)
        self.assertEqual(
            parser.feed(raw[15:]), [Frame(Header(TYPE_DATA, 0, 1, 10), b"0123456789")]
        )
        self.assertEqual(parser.buffered, 0)

    def test_byte_at_a_time(self):
        """Feeding one byte at a time gives the same frames as feeding all at once."""
        raw = frame_bytes(TYPE_DATA, 0, 1, 3, b"abc") + frame_bytes(
            TYPE_PING, FLAG_SYN, 0, 9
        )
        parser = FrameParser()
        frames = []
        for i in range(len(raw)):
            frames += parser.feed(raw[i : i + 1])
        self.assertEqual(frames, FrameParser().feed(raw))

    def test_large_frame_in_many_chunks(self):
        """A 4 MiB payload fed in 64 KiB pieces comes out whole and exact."""
        payload = bytes(range(256)) * (16 * 1024)
        raw = frame_bytes(TYPE_DATA, 0, 5, len(payload), payload)
        parser = FrameParser()
        frames = []
        for i in range(0, len(raw), 65536):
            frames += parser.feed(raw[i : i + 65536])
        self.assertEqual(len(frames), 1)
        self.assertEqual(frames[0].payload, payload)

    def test_garbage_is_error(self):
        """Bad version bytes raise, and good frames before them are handed over."""
        good = frame_bytes(TYPE_PING, FLAG_SYN, 0, 1)
        parser = FrameParser()
        e = self.assertRaises(FrameError, parser.feed, good + b"\x07" * 12)
        self.assertEqual(e.frames, [Frame(Header(TYPE_PING, FLAG_SYN, 0, 1))])
        self.assertRaises(FrameError, parser.feed, good)

    def test_data_length_limit(self):
        """A Data header over max_data_length is refused before its payload arrives."""
        parser = FrameParser(max_data_length=100)
        e = self.assertRaises(
            FrameError, parser.feed, encode_header(TYPE_DATA, 0, 1, 101)
        )
        self.assertIn("101", str(e))

    def test_mutable_input_is_copied(self):
        """Bytes kept for a partial frame do not change if the caller reuses its buffer."""
        buf = bytearray(frame_bytes(TYPE_DATA, 0, 1, 4, b"abcd"))
        parser = FrameParser()
        self.assertEqual(parser.feed(buf[:14]), [])
        tail = buf[14:]
        buf[:] = b"x" * len(buf)
        self.assertEqual(parser.feed(tail)[0].payload, b"abcd")

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=8))
    def test_arbitrary_input(self, data, cuts):
        """Arbitrary bytes in arbitrary splits only ever raise FrameError."""
        parser = FrameParser(max_data_length=1000)
        points = sorted({c for c in cuts if c <= len(data)})
        start = 0
        try:
            for end in points + [len(data)]:
                for frame in parser.feed(data[start:end]):
                    self.assertIsInstance(frame, Frame)
                start = end
        except FrameError:
            pass


class CaptureTests(SynchronousTestCase):
    """The plain-mux capture of a real frpc/frps 0.70 session."""

    def setUp(self):
        messages = json.loads(DATA.child("messages.json").getContent())
        self.connection = messages["connections"][0]
        self.streams = DATA.child("streams")

    def parse(self, direction):
        raw = self.streams.child(f"conn-01.{direction}.bin").getContent()
        parser = FrameParser()
        frames = []
        for i in range(0, len(raw), 1000):  # split mid-frame on purpose
            frames += parser.feed(raw[i : i + 1000])
        self.assertEqual(parser.buffered, 0)
        return frames

    def check_direction(self, direction):
        frames = self.parse(direction)
        expected = self.connection["yamux"][f"{direction}_frames"]
        got = [
            {
                "type": TYPE_NAMES[f.header.type],
                "flags": [name for bit, name in FLAG_NAMES if f.header.flags & bit],
                "flags_value": f.header.flags,
                "stream_id": f.header.stream_id,
                "length": f.header.length,
            }
            for f in frames
        ]
        self.assertEqual(got, [{k: e[k] for k in got[0]} for e in expected])
        payloads = {}
        for f in frames:
            if f.header.type == TYPE_DATA:
                payloads[f.header.stream_id] = (
                    payloads.get(f.header.stream_id, b"") + f.payload
                )
        for stream in self.connection["streams"]:
            path = DATA.preauthChild(stream["demuxed_files"][direction])
            self.assertEqual(
                payloads.get(stream["stream_id"], b""),
                path.getContent(),
                stream["stream_id"],
            )

    def test_client_to_server(self):
        """c2s parses into exactly the captured frame list and demuxed payloads."""
        self.check_direction("c2s")

    def test_server_to_client(self):
        """s2c parses into exactly the captured frame list and demuxed payloads."""
        self.check_direction("s2c")
