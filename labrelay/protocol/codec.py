"""
The per-proxy wrapping of work-connection payload (frp's use_encryption and
use_compression).

Writing: application bytes -> snappy frames -> AES-128-CFB -> wire.
Reading: the reverse.  Both ends wrap only after the StartWorkConn frame.
"""

from .crypto import StreamDecryptor, StreamEncryptor, derive_key


class PayloadCodec:
    """Stateful encoder/decoder of one work connection's payload."""

    def __init__(self, token: str, use_encryption: bool, use_compression: bool):
        key = derive_key(token) if use_encryption else None
        self._encryptor = StreamEncryptor(key) if key else None
        self._decryptor = StreamDecryptor(key) if key else None
        self._writer = self._reader = None
        if use_compression:
            # python-snappy (cramjam): loaded by the first proxy that uses it
            from .compression import SnappyReader, SnappyWriter

            self._writer = SnappyWriter()
            self._reader = SnappyReader()

    @property
    def is_identity(self) -> bool:
        return self._encryptor is None and self._writer is None

    def encode(self, data: bytes) -> bytes:
        if self._writer is not None:
            data = self._writer.compress(data)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        return data

    def decode(self, data: bytes) -> bytes:
        if self._decryptor is not None:
            data = self._decryptor.decrypt(data)
        if self._reader is not None and data:
            data = self._reader.decompress(data)
        return data


def identity_codec():
    """A codec that passes bytes through unchanged."""
    return PayloadCodec("", False, False)
