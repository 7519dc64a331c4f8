"""
frp's token authentication: the privilege key and its checks.

``privilege_key = md5_hex(token + decimal(timestamp))``.  Comparisons are
constant-time.
"""

import hashlib
import hmac


def privilege_key(token: str, timestamp: int) -> str:
    """The key frp sends in Login, and in Ping/NewWorkConn when enabled."""
    return hashlib.md5(
        token.encode("utf-8") + str(int(timestamp)).encode("ascii")
    ).hexdigest()


def check_privilege_key(token: str, timestamp: int, key: str) -> bool:
    """Whether *key* proves knowledge of *token* for *timestamp*."""
    if not isinstance(key, str):
        return False
    expected = privilege_key(token, timestamp).encode("ascii")
    return hmac.compare_digest(expected, key.encode("utf-8", "replace"))
