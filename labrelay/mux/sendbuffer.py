# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
The bytes a yamux stream's protocol wrote and the stream has not sent yet
(the peer's window is exhausted, or the session's transport is full).

The chunks are a list, not a deque: every stream of every session has a
send buffer, almost always empty, and an empty deque costs 760 bytes
against a list's 56 (10,000 clients hold 20,000 streams).  Taking from
the front of a list moves the pointers behind it, a few at most outside
a window-blocked bulk transfer.
"""


class SendBuffer:
    """
    Written chunks, in order, taken from the front in frame-sized pieces:
    a chunk is sliced (through a memoryview) rather than copied, and a
    piece that is one whole chunk is that chunk.

    :ivar size: bytes held.
    """

    __slots__ = ("_chunks", "_offset", "size")

    def __init__(self):
        self._chunks = []
        self._offset = 0  # bytes of the first chunk already taken
        self.size = 0

    def append(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)

    def take(self, n: int) -> bytes:
        """Remove and return the first *n* bytes (at most :attr:`size`)."""
        self.size -= n
        chunks = self._chunks
        parts = []
        while n:
            head = chunks[0]
            start = self._offset
            available = len(head) - start
            if available <= n:
                parts.append(head if start == 0 else memoryview(head)[start:])
                del chunks[0]
                self._offset = 0
                n -= available
            else:
                parts.append(memoryview(head)[start : start + n])
                self._offset = start + n
                n = 0
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.size = 0
