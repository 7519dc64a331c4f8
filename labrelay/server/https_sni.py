# -*- test-case-name: tests.unit.test_https_sni -*-
"""
The server name (SNI) of a TLS ClientHello, read from the first bytes of a
connection without terminating TLS: what the HTTPS vhost routes by.

:func:`read_server_name` is pure and strict.  It takes the bytes received
so far and answers ``None`` (a ClientHello is coming, more bytes are
needed), or a :class:`ClientHello` (its ``server_name``, ``""`` when the
hello names none), or raises :class:`HelloError`.  Only what routing needs
is parsed: the handshake records (type 22, version 3.x), which may split
one handshake message across several records as TLS allows; the one
ClientHello message (at most :data:`MAX_HELLO` bytes); its fixed fields
(every length checked against what follows); its extensions (each type at
most once, their lengths adding up exactly); and in ``server_name`` one
``host_name`` entry, a DNS name of letters, digits, ``-``, ``_`` and ``.``
(no trailing dot, at most 253 characters, as RFC 6066 and Go's TLS
require), returned lower-cased.  Nothing else of the hello is judged: the
backend's TLS stack does that.
"""

from __future__ import annotations

from typing import Optional

import attrs

#: Largest ClientHello message accepted (its 4-byte header excluded).
#: Browsers send 0.5-2 KiB (post-quantum key shares included); TLS allows
#: 16 MiB, which the relay does not hold for a name.
MAX_HELLO = 16 * 1024

#: TLS record and handshake constants.
_HANDSHAKE_RECORD = 22
_CLIENT_HELLO = 1
_RECORD_HEADER = 5
_MAX_RECORD = 16384 + 2048  # TLSPlaintext's length bound, generously
_SERVER_NAME_EXTENSION = 0
_HOST_NAME = 0
_MAX_NAME = 253
_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_.")


class HelloError(ValueError):
    """The bytes are not a ClientHello labrelay routes (the message says
    why)."""


@attrs.frozen
class ClientHello:
    """What routing needs of a ClientHello: its server name (``""``:
    none), lower-cased."""

    server_name: str


def read_server_name(data: bytes, max_hello: int = MAX_HELLO) -> Optional[ClientHello]:
    """
    The :class:`ClientHello` at the start of *data*, or None if *data* is a
    valid beginning of one; :class:`HelloError` otherwise (see the module
    docstring).
    """
    message = _handshake_message(data, max_hello)
    if message is None:
        return None
    return ClientHello(_server_name(message))


def _handshake_message(data: bytes, max_hello: int) -> Optional[bytes]:
    """The ClientHello message body, gathered from the handshake records
    at the start of *data*, or None while incomplete."""
    fragments = bytearray()
    wanted = None  # the body length, once the message header is read
    offset = 0
    while True:
        header = data[offset : offset + _RECORD_HEADER]
        if header and header[0] != _HANDSHAKE_RECORD:
            raise HelloError("not a TLS handshake record")
        if len(header) >= 2 and header[1] != 3:
            raise HelloError("not a TLS 1.x record")
        if len(header) < _RECORD_HEADER:
            return None
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > _MAX_RECORD:
            raise HelloError(f"bad TLS record length {length}")
        body = data[offset + _RECORD_HEADER : offset + _RECORD_HEADER + length]
        fragments += body
        if wanted is None and len(fragments) >= 4:
            if fragments[0] != _CLIENT_HELLO:
                raise HelloError("the first handshake message is not a ClientHello")
            wanted = int.from_bytes(fragments[1:4], "big")
            if wanted > max_hello:
                raise HelloError(
                    f"ClientHello of {wanted} bytes is larger than {max_hello}"
                )
        if wanted is not None and len(fragments) >= 4 + wanted:
            return bytes(fragments[4 : 4 + wanted])
        if len(body) < length:
            return None
        offset += _RECORD_HEADER + length


class _Reader:
    """Length-checked reads from one bytes value."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise HelloError(f"truncated ClientHello ({what})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> bytes:
        return self.take(self.number(size, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _server_name(message: bytes) -> str:
    hello = _Reader(message)
    version = hello.take(2, "version")
    if version[0] != 3:
        raise HelloError("ClientHello version is not 3.x")
    hello.take(32, "random")
    if len(hello.vector(1, "session id")) > 32:
        raise HelloError("session id longer than 32 bytes")
    suites = hello.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise HelloError("bad cipher suite list")
    if not hello.vector(1, "compression methods"):
        raise HelloError("no compression method")
    if hello.left == 0:
        return ""  # no extensions
    extensions = _Reader(hello.vector(2, "extensions"))
    if hello.left:
        raise HelloError("bytes after the extensions")
    seen = set()
    name = ""
    while extensions.left:
        kind = extensions.number(2, "extension type")
        body = extensions.vector(2, "extension")
        if kind in seen:
            raise HelloError(f"extension {kind} repeated")
        seen.add(kind)
        if kind == _SERVER_NAME_EXTENSION:
            name = _host_name(body)
    return name


def _host_name(extension: bytes) -> str:
    names = _Reader(extension)
    entries = _Reader(names.vector(2, "server name list"))
    if names.left or not entries.left:
        raise HelloError("bad server name list")
    found = None
    while entries.left:
        kind = entries.number(1, "server name type")
        value = entries.vector(2, "server name")
        if kind != _HOST_NAME:
            continue
        if found is not None:
            raise HelloError("more than one host_name")
        found = value
    if found is None:
        return ""
    name = found.lower()
    if (
        not name
        or len(name) > _MAX_NAME
        or name.endswith(b".")
        or name.startswith(b".")
        or b".." in name
        or not _NAME_CHARS.issuperset(name)
    ):
        raise HelloError("server name is not a DNS name")
    return name.decode("ascii")
