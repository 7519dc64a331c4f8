"""
Telling a client whose ``tcp_mux`` differs from the server's what is wrong.

Without this, a mismatch looks like garbage to both sides: the server closes
and the client retries forever.  The first bytes of a connection are enough
to tell: a yamux session starts with version byte 0, a plain frp connection
with a message type byte (``o`` for Login).  The server then answers in the
client's own framing with a LoginResp whose error names ``tcp_mux``, so real
frpc and labrelay clients both print it, and logs the same on its side.
"""

import struct

from .. import FRP_VERSION
from ..mux.frames import (
    FLAG_ACK,
    FLAG_FIN,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_WINDOW_UPDATE,
    encode_header,
)
from ..protocol import messages
from ..protocol.framing import encode_message

SERVER_MUX_ON = (
    "tcp_mux mismatch: the server has tcp_mux = true but this "
    "client has tcp_mux = false; set tcp_mux the same on both "
    "sides"
)
SERVER_MUX_OFF = (
    "tcp_mux mismatch: the server has tcp_mux = false but this "
    "client has tcp_mux = true; set tcp_mux the same on both "
    "sides"
)


def looks_like_plain_frp(data: bytes) -> bool:
    """Whether *data* starts like a plain (not multiplexed) frp connection."""
    return data[:1] in (messages.Login.TYPE_BYTE, messages.NewWorkConn.TYPE_BYTE)


def opened_yamux_stream(data: bytes):
    """The stream id a yamux client opened with *data*, or None."""
    if len(data) < 12 or data[0] != 0 or data[1] > TYPE_GO_AWAY:
        return None
    _, _, _, stream_id, _ = struct.unpack(">BBHII", data[:12])
    return stream_id or None


def plain_refusal(text: str) -> bytes:
    """A plaintext LoginResp carrying *text*."""
    return encode_message(messages.LoginResp(version=FRP_VERSION, error=text))


def yamux_refusal(stream_id: int, text: str) -> bytes:
    """Accept *stream_id*, answer a LoginResp error on it, close, go away."""
    body = plain_refusal(text)
    return b"".join(
        [
            encode_header(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, 0),
            encode_header(TYPE_DATA, 0, stream_id, len(body)),
            body,
            encode_header(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0),
            encode_header(TYPE_GO_AWAY, 0, 0, 0),
        ]
    )
