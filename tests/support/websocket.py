"""
WebSocket (RFC 6455), the least needed for an echo: frame encoding and
parsing, a server that echoes every data frame, and a user that waits for
the 101 head and then for frames.
"""

import base64
import hashlib
import struct

from twisted.internet import defer
from twisted.internet.protocol import Protocol

from .harness import within

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_frame(opcode: int, payload: bytes, mask: bytes = b"") -> bytes:
    """One final frame; masked when *mask* (4 bytes) is given."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = _xor(payload, mask)
    return head + payload


def _xor(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        n, "big"
    )


def ws_parse(buf: bytes):
    """(opcode, payload, rest) of the first complete frame, or None."""
    if len(buf) < 2:
        return None
    opcode, masked, n, i = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack(">Q", buf[2:10])[0], 10
    mask = b""
    if masked:
        mask, i = buf[i : i + 4], i + 4
    if len(buf) < i + n:
        return None
    payload = buf[i : i + n]
    if masked:
        payload = _xor(payload, mask)
    return opcode, payload, buf[i + n :]


class WsEcho(Protocol):
    """A WebSocket server that echoes every data frame."""

    def connectionMade(self):
        self.buf = b""
        self.upgraded = False

    def dataReceived(self, data):
        self.buf += data
        if not self.upgraded:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + ws_accept(fields[b"sec-websocket-key"])
                + b"\r\n\r\n"
            )
            self.upgraded = True
        while True:
            frame = ws_parse(self.buf)
            if frame is None:
                return
            opcode, payload, self.buf = frame
            if opcode == 8:
                self.transport.write(ws_frame(8, payload))
                self.transport.loseConnection()
                return
            self.transport.write(ws_frame(opcode, payload))


class WsUser(Protocol):
    """Collects bytes; hands out the 101 head, then frames."""

    def __init__(self):
        self.buf = b""
        self.closed = defer.Deferred()
        self._waiting = None

    def dataReceived(self, data):
        self.buf += data
        self._check()

    def connectionLost(self, reason):
        self.closed.callback(None)

    def _check(self):
        if self._waiting is None:
            return
        test, d = self._waiting
        result = test()
        if result is not None:
            self._waiting = None
            d.callback(result)

    def _wait(self, test):
        d = defer.Deferred()
        self._waiting = (test, d)
        self._check()
        return within(d, 30)

    def head(self):
        def test():
            if b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                return head

        return self._wait(test)

    def frame(self):
        def test():
            frame = ws_parse(self.buf)
            if frame is not None:
                self.buf = frame[2]
                return frame[:2]

        return self._wait(test)
