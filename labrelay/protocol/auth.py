"""
frp's token authentication: the privilege key and its checks.

``privilege_key = md5_hex(token + decimal(timestamp))``.  Comparisons are
constant-time.  frp checks no freshness; :func:`timestamp_skew_error` is
labrelay's optional check (``auth_timestamp_skew``).  Remembering used keys
(replay refusal) needs state and a clock, so it lives with the server
(``labrelay.server.guard``).
"""

import hashlib
import hmac
from typing import Optional


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


def timestamp_skew_error(timestamp: int, now: float, allowed: float) -> Optional[str]:
    """
    Why *timestamp* is too far from the server's clock *now*, or None.
    *allowed* <= 0 turns the check off (frp's behaviour: clocks drift).
    """
    if allowed <= 0:
        return None
    skew = now - timestamp
    if abs(skew) <= allowed:
        return None
    side = "behind" if skew > 0 else "ahead of"
    return (
        f"timestamp {timestamp} is {abs(skew):.0f}s {side} the server's "
        f"clock (auth_timestamp_skew = {allowed:g}); check the client's "
        f"clock"
    )
