"""
frp's stream encryption: AES-128-CFB keyed from the token.

Used for the control channel after login and for work connections of
proxies with ``use_encryption``.  Each direction is one continuous CFB
stream (128-bit segments) whose random IV is written in clear before the
first ciphertext byte, lazily on the first write.  The key is
``PBKDF2-HMAC-SHA1(token, salt=b"frp", 64 iterations, 16 bytes)``.  There
is no integrity protection; that is what TLS is for.
"""

import functools
import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 43 keeps CFB among the "decrepit" modes
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

IV_LENGTH = 16
SALT = b"frp"
ITERATIONS = 64


@functools.lru_cache(maxsize=64)
def derive_key(token: str) -> bytes:
    """The AES-128 key frp derives from a token."""
    return hashlib.pbkdf2_hmac("sha1", token.encode("utf-8"), SALT, ITERATIONS, 16)


class StreamEncryptor:
    """The writing side: prepends the IV to the first non-empty output."""

    def __init__(self, key: bytes, iv: bytes = None):
        self._key = key
        self._iv = iv
        self._cipher = None

    def encrypt(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._cipher is None:
            iv = self._iv if self._iv is not None else os.urandom(IV_LENGTH)
            self._cipher = Cipher(algorithms.AES(self._key), CFB(iv)).encryptor()
            return iv + self._cipher.update(data)
        return self._cipher.update(data)


class StreamDecryptor:
    """The reading side: takes the first 16 bytes as the IV."""

    def __init__(self, key: bytes):
        self._key = key
        self._iv = b""
        self._cipher = None

    def decrypt(self, data: bytes) -> bytes:
        if self._cipher is None:
            self._iv += data
            if len(self._iv) < IV_LENGTH:
                return b""
            iv, data = self._iv[:IV_LENGTH], self._iv[IV_LENGTH:]
            self._iv = b""
            self._cipher = Cipher(algorithms.AES(self._key), CFB(iv)).decryptor()
        return self._cipher.update(data) if data else b""
