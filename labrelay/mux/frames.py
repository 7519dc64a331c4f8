# -*- test-case-name: tests.unit.test_yamux_frames -*-
"""
yamux framing, sans-IO: the 12-byte header and an incremental frame parser.

Every yamux frame starts with ``version u8 | type u8 | flags u16 | stream id
u32 | length u32`` (big-endian).  Only Data frames carry a body (``length``
bytes); for WindowUpdate ``length`` is a window delta, for Ping an opaque
value echoed back, for GoAway a reason code.  This module knows nothing about
streams, windows or Twisted; :mod:`labrelay.mux.session` builds on it.
"""

import struct

import attrs

from ..errors import ProtocolError

VERSION = 0

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

TYPE_NAMES = {
    TYPE_DATA: "Data",
    TYPE_WINDOW_UPDATE: "WindowUpdate",
    TYPE_PING: "Ping",
    TYPE_GO_AWAY: "GoAway",
}

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

FLAG_NAMES = (
    (FLAG_SYN, "SYN"),
    (FLAG_ACK, "ACK"),
    (FLAG_FIN, "FIN"),
    (FLAG_RST, "RST"),
)

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

#: Every stream starts with this window in each direction (yamux's
#: ``initialStreamWindow``); a SYN or ACK then grants up to the maximum.
INITIAL_WINDOW = 256 * 1024

_HEADER = struct.Struct(">BBHII")
HEADER_SIZE = _HEADER.size
MAX_LENGTH = 0xFFFFFFFF


class FrameError(ProtocolError):
    """
    The byte stream is not valid yamux.

    :ivar frames: the complete frames decoded, in the same ``feed`` call,
        before the bad header; a session still acts on them.
    """

    def __init__(self, message: str, frames=()):
        super().__init__(message)
        self.frames = list(frames)


@attrs.frozen
class Header:
    """One decoded 12-byte frame header."""

    type: int
    flags: int
    stream_id: int
    length: int

    def describe(self) -> str:
        """A short human form such as ``WindowUpdate[SYN] stream=1 length=6029312``."""
        names = "|".join(name for bit, name in FLAG_NAMES if self.flags & bit)
        return f"{TYPE_NAMES.get(self.type, str(self.type))}[{names}] stream={self.stream_id} length={self.length}"


@attrs.frozen
class Frame:
    """A header plus, for Data frames, its payload (``b""`` otherwise)."""

    header: Header
    payload: bytes = b""


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """Pack one header; raises ValueError on out-of-range fields."""
    if frame_type not in TYPE_NAMES:
        raise ValueError(f"unknown yamux frame type {frame_type}")
    if not 0 <= flags <= 0xFFFF:
        raise ValueError(f"flags {flags} out of range")
    if not 0 <= stream_id <= MAX_LENGTH or not 0 <= length <= MAX_LENGTH:
        raise ValueError("stream id or length out of the u32 range")
    return _HEADER.pack(VERSION, frame_type, flags, stream_id, length)


def decode_header(data) -> Header:
    """
    Unpack the first 12 bytes of ``data`` (bytes-like).

    Raises :class:`FrameError` on a version other than 0 or an unknown type.
    """
    version, frame_type, flags, stream_id, length = _HEADER.unpack_from(data)
    if version != VERSION:
        raise FrameError(
            f"unsupported yamux version {version}: the peer is not speaking "
            f"yamux (is tcp_mux the same on both sides?)"
        )
    if frame_type not in TYPE_NAMES:
        raise FrameError(f"unknown yamux frame type {frame_type}")
    return Header(frame_type, flags, stream_id, length)


class FrameParser:
    """
    Incremental decoder: :meth:`feed` bytes in, complete frames out.

    Received chunks are kept in a list and joined only when the next header
    or payload is complete, so a large Data frame arriving in many reads is
    copied a bounded number of times rather than once per read.  Headers and
    payloads are cut out of the joined buffer through a memoryview.

    :param max_data_length: a Data frame announcing a longer payload is an
        error as soon as its header arrives (a session passes its receive
        window maximum, so a hostile length cannot make it buffer 4 GiB).
    """

    def __init__(self, max_data_length: int = MAX_LENGTH):
        self._max_data_length = max_data_length
        self._chunks = []
        self._offset = 0  # bytes of _chunks[0] already consumed
        self._size = 0  # unconsumed bytes over all chunks
        self._header = None  # a decoded Data header still waiting for its payload
        self._error = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return self._size + (HEADER_SIZE if self._header is not None else 0)

    def feed(self, data) -> list:
        """
        Add received bytes and return every frame they complete, in order.

        Raises :class:`FrameError` on invalid input (with ``.frames`` holding
        the frames completed before it); the parser then stays failed.
        """
        if self._error is not None:
            raise FrameError(str(self._error))
        if data:
            if type(data) is not bytes:
                data = bytes(data)  # never keep a reference to a mutable buffer
            self._chunks.append(data)
            self._size += len(data)
        frames = []
        try:
            self._parse(frames)
        except FrameError as e:
            self._error = e
            self._chunks = []
            self._size = 0
            raise FrameError(str(e), frames) from None
        return frames

    def _needed(self) -> int:
        return HEADER_SIZE if self._header is None else self._header.length

    def _parse(self, frames: list) -> None:
        if self._size < self._needed():
            return
        buf = self._coalesce()
        view = memoryview(buf)
        end = len(buf)
        pos = self._offset
        header = self._header
        try:
            while True:
                if header is None:
                    if end - pos < HEADER_SIZE:
                        break
                    header = decode_header(view[pos : pos + HEADER_SIZE])
                    pos += HEADER_SIZE
                    if header.type != TYPE_DATA:
                        frames.append(Frame(header))
                        header = None
                        continue
                    if header.length > self._max_data_length:
                        raise FrameError(
                            f"Data frame of {header.length} bytes on stream "
                            f"{header.stream_id} exceeds the limit of "
                            f"{self._max_data_length}"
                        )
                if end - pos < header.length:
                    break
                payload = bytes(view[pos : pos + header.length])
                pos += header.length
                frames.append(Frame(header, payload))
                header = None
        finally:
            view.release()
            self._header = header
            self._size = end - pos
            if self._size:
                self._chunks = [buf]
                self._offset = pos
            else:
                self._chunks = []
                self._offset = 0

    def _coalesce(self) -> bytes:
        """Make the unconsumed input one buffer (no copy if it already is)."""
        if len(self._chunks) == 1:
            return self._chunks[0]
        first = memoryview(self._chunks[0])[self._offset :]
        joined = b"".join([first, *self._chunks[1:]])
        first.release()
        self._chunks = [joined]
        self._offset = 0
        return joined
