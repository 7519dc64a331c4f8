"""
frp's ``use_compression``: the snappy framing format, one frame per write.

python-snappy implements the format (stream identifier, CRC-32C checked
chunks); this module adds frp's write discipline (every write is flushed as
its own chunks, so interactive protocols never stall) and a bound on how
much an unfinished chunk may make the reader hold.
"""

import snappy

from ..errors import ProtocolError

# A chunk holds at most 64 KiB of data; compressed it is at most 76490 bytes
# (snappy's MaxEncodedLen(65536)), plus a 4-byte checksum and 4-byte header.
MAX_CHUNK = 76490 + 8


class SnappyWriter:
    """Compress each write into complete snappy frames."""

    def __init__(self):
        self._compressor = snappy.StreamCompressor()

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        return self._compressor.add_chunk(data)


class SnappyReader:
    """Decompress a snappy frame stream that arrives in arbitrary pieces."""

    def __init__(self):
        self._decompressor = snappy.StreamDecompressor()

    def decompress(self, data: bytes) -> bytes:
        try:
            out = self._decompressor.decompress(data)
        except Exception as e:  # python-snappy raises several types
            raise ProtocolError(f"bad snappy stream: {e}") from None
        held = self._decompressor.remains
        if held is not None and len(held) > MAX_CHUNK + 10:
            raise ProtocolError("snappy chunk longer than the format allows")
        return out
