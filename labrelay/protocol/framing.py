"""
frp's v1 message framing, sans-IO.

A frame is one type byte, a signed 64-bit big-endian body length and a JSON
body.  :class:`MessageParser` turns a byte stream into messages one at a time
and never consumes more than the frames it returns, because the bytes after a
LoginResp or a StartWorkConn belong to another layer (ciphertext or relayed
user data): the caller takes them back with :meth:`MessageParser.take_rest`.
"""

import json
import re
import struct

from ..errors import ProtocolError
from .messages import MESSAGE_TYPES, Message, message_from_json

#: frp's ``defaultMaxMsgLength``: a body longer than this is refused.
MAX_BODY_LENGTH = 10240

_HEADER = struct.Struct(">cq")
HEADER_LENGTH = _HEADER.size

#: The magic that starts a connection in frp's opt-in wire protocol v2.
V2_MAGIC = b"FRP\x00\x02\r\n"


def encode_message(message: Message) -> bytes:
    """Frame one message for the wire."""
    body = message.to_json_bytes()
    if len(body) > MAX_BODY_LENGTH:
        raise ProtocolError(
            f"{message.name} is {len(body)} bytes, over frp's limit of {MAX_BODY_LENGTH}"
        )
    return _HEADER.pack(message.type_byte, len(body)) + body


class MessageParser:
    """Incremental decoder of framed frp messages."""

    def __init__(self, max_body_length: int = MAX_BODY_LENGTH):
        self._buffer = bytearray()
        self._max = max_body_length

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    def next_message(self):
        """
        Decode the next complete message, or return None when more bytes are
        needed.  Raises :class:`ProtocolError` on a frame frp would refuse.
        """
        buffer = self._buffer
        if not buffer:
            return None
        type_byte = bytes(buffer[:1])
        if type_byte not in MESSAGE_TYPES:
            if buffer.startswith(V2_MAGIC[: len(buffer)]):
                if len(buffer) < len(V2_MAGIC):
                    return None
                raise ProtocolError(
                    "peer speaks frp wire protocol v2; labrelay speaks v1 "
                    '(set transport.wireProtocol = "v1" on the frpc)'
                )
            if type_byte == b"\x00":
                # yamux's version byte: the peer multiplexes and we do not
                raise ProtocolError(
                    "unknown message type byte b'\\x00', the first byte of "
                    "a yamux frame (is tcp_mux the same on both sides?)"
                )
            raise ProtocolError(f"unknown message type byte {type_byte!r}")
        if len(buffer) < HEADER_LENGTH:
            return None
        _, length = _HEADER.unpack_from(buffer)
        if length < 0:
            raise ProtocolError(f"negative message length {length}")
        if length > self._max:
            raise ProtocolError(
                f"message length {length} exceeds the limit of {self._max}"
            )
        end = HEADER_LENGTH + length
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER_LENGTH:end])
        del buffer[:end]
        return decode_body(type_byte, body)

    def messages(self):
        """Yield every complete message buffered so far."""
        while True:
            message = self.next_message()
            if message is None:
                return
            yield message

    def take_rest(self) -> bytes:
        """Return and forget every byte not yet decoded."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    @property
    def buffered(self) -> int:
        """How many undecoded bytes are held."""
        return len(self._buffer)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text):
    # Go refuses a number it cannot hold in a float64; Python would make it
    # inf, which no JSON encoder can write back.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_body(type_byte: bytes, body: bytes) -> Message:
    """Decode the JSON body of a frame whose type byte is known."""
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_not_json, parse_float=_finite_float
        )
        if _SURROGATE_ESCAPE.search(body):
            # pairs decode to one character; a lone half cannot be UTF-8
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError) as e:
        raise ProtocolError(f"message body is not valid JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("message body nests too deeply") from None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"message body is JSON {type(value).__name__}, not an object"
        )
    return message_from_json(type_byte, value)
