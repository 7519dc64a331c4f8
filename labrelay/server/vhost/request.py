# -*- test-case-name: tests.unit.test_vhost_paths,tests.integration.test_vhost_paths,tests.unit.test_smuggling,tests.integration.test_smuggling -*-
"""
What the HTTP vhost refuses in a request head before routing it, and the
request target it routes and forwards.  Pure functions, no I/O; a refusal
is a :class:`BadRequest` (or a reason string) that the vhost answers 400.

Body framing (RFC 9112 §6.1, §6.3), read from the head as received
(h11 has already parsed it, and forgives some of what is refused here):

* a bare LF line ending, or an obs-fold continuation line (RFC 9112
  §2.2, §5.2): h11 accepts both, other parsers split the head differently;
* both ``Content-Length`` and ``Transfer-Encoding``;
* more than one ``Content-Length`` line, or one whose value is not only
  digits (``5, 5``, ``+5``, ``0x5``);
* ``Transfer-Encoding`` in an HTTP/1.0 request;
* a header named like a framing header with ``_`` for ``-``
  (``Transfer_Encoding``), which some servers read as the real one.

h11 refuses the rest itself (the vhost answers 400 where h11 hints 501):
any Transfer-Encoding but one ``chunked`` (which it takes in any case and
with surrounding whitespace), conflicting lengths, a second Host,
malformed chunk lines and chunk sizes over 20 hex digits.  What passes is
forwarded with framing headers the relay writes from h11's reading, never
the ones received, and bodies are framed anew (a user's chunk sizes never
reach the backend).

Path normalisation (RFC 3986 §5.2.4, §6.2.2): an origin-form path has
its percent-encoded unreserved characters decoded (``%2e`` is ``.``,
``%61`` is ``a``) and other encodings upper-cased, then its dot segments
removed and its empty segments (``//``) dropped; the query is kept as it
came.  That path is routed and forwarded, so the backend serves what was
matched.  An encoded slash (``%2F``) stays encoded and is no separator for
the relay; since some backends decode it (or read ``\\`` as ``/``, or drop
``;parameters`` from segments, as Java servers do), the path is also read
that way, and a request whose two readings reach different routes is
refused (``/x/..%2Fadmin``, ``/%2Fadmin``, ``/x/..;/admin``).  A ``%`` that
does not start an encoding, a fragment (``#``) and a target that is not a
path (other than ``*`` for OPTIONS and the authority of CONNECT) are
refused.
"""

from typing import Optional

#: Header names (lower case) that frame a message body.
FRAMING_NAMES = (b"content-length", b"transfer-encoding")

_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX = frozenset(b"0123456789ABCDEFabcdef")
#: What makes a path's normal form or lenient reading differ from it:
#: encodings, empty and dot segments, backslashes, segment parameters.
_NOT_PLAIN = (b"%", b"//", b"/.", b"\\", b";")


class BadRequest(ValueError):
    """A request target the vhost answers 400 (the text says why)."""


def framing_problem(head: bytes, http_version: bytes) -> Optional[str]:
    """
    Why the request head *head* (request line and header lines as
    received, up to the empty line) frames its body ambiguously, or None.
    """
    if b"\n" in head.replace(b"\r\n", b""):
        return "bare LF line ending"
    lower = head.lower()
    if (
        b"content" not in lower
        and b"transfer" not in lower
        and b"\r\n " not in head
        and b"\r\n\t" not in head
    ):
        return None  # no folding, no header named like a framing header
    lengths = []
    encodings = 0
    for line in head.split(b"\r\n")[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding"
        name, _, value = line.partition(b":")
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif lower == b"transfer-encoding":
            encodings += 1
        elif lower.replace(b"_", b"-") in FRAMING_NAMES:
            return f"header {name.decode('ascii', 'replace')}"
    if lengths and encodings:
        return "both Content-Length and Transfer-Encoding"
    if len(lengths) > 1:
        return "more than one Content-Length"
    if lengths and not lengths[0].isdigit():
        return "Content-Length is not a number"
    if encodings and http_version != b"1.1":
        return "Transfer-Encoding in an HTTP/1.0 request"
    return None


def _unescape_unreserved(path: bytes) -> bytes:
    """*path* with %XX of unreserved characters decoded and other
    encodings upper-cased; BadRequest for a stray ``%``."""
    if b"%" not in path:
        return path
    out = bytearray()
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c != 0x25:
            out.append(c)
            i += 1
            continue
        digits = path[i + 1 : i + 3]
        if len(digits) != 2 or digits[0] not in _HEX or digits[1] not in _HEX:
            raise BadRequest("malformed percent-encoding in the path")
        byte = int(digits, 16)
        if byte in _UNRESERVED:
            out.append(byte)
        else:
            out += b"%" + digits.upper()
        i += 3
    return bytes(out)


def _resolve(segments) -> bytes:
    """An absolute path from *segments* (what follows its first ``/``),
    dot segments resolved and empty segments dropped; a trailing ``/``
    (or dot segment) is kept as a trailing ``/``."""
    stack = []
    trailing = False
    for segment in segments:
        trailing = segment in (b"", b".", b"..")
        if segment == b"..":
            if stack:
                stack.pop()
        elif not trailing:
            stack.append(segment)
    path = b"/" + b"/".join(stack)
    if trailing and stack:
        path += b"/"
    return path


def normalise_path(path: bytes) -> bytes:
    """The normal form of origin-form *path* (no query); see the module
    docstring."""
    if not path.startswith(b"/"):
        raise BadRequest("the request target is not a path")
    return _resolve(_unescape_unreserved(path).split(b"/")[1:])


def _decode(path: bytes, keep_slash: bool) -> bytes:
    """*path* (its encodings valid and upper-case) percent-decoded, but
    ``%2F`` kept when *keep_slash*."""
    if b"%" not in path:
        return path
    out = bytearray()
    pieces = path.split(b"%")
    out += pieces[0]
    for piece in pieces[1:]:
        if keep_slash and piece[:2] == b"2F":
            out += b"%2F"
        else:
            out.append(int(piece[:2], 16))
        out += piece[2:]
    return bytes(out)


def lenient_reading(path: bytes) -> bytes:
    """Normal *path* as a lax backend may read it: every encoding decoded
    (``%2F`` too), ``\\`` as ``/``, ``;parameters`` dropped from each
    segment, then dot and empty segments resolved again."""
    decoded = _decode(path, keep_slash=False).replace(b"\\", b"/")
    return _resolve(segment.split(b";", 1)[0] for segment in decoded.split(b"/")[1:])


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def route_target(method: bytes, target: bytes):
    """
    ``(forward, path, lenient)`` for a request target in origin form (an
    absolute-form target already reduced to its path and query):
    *forward* the target to send to the backend (normal path, query as
    received), *path* the decoded path to route by (``%2F`` kept
    encoded), *lenient* the path as a lax backend may read it, to be
    routed alike.  BadRequest when the target is refused.
    """
    if b"#" in target:
        raise BadRequest("a fragment in the request target")
    if method == b"CONNECT" or (target == b"*" and method == b"OPTIONS"):
        return target, _text(target), _text(target)
    raw, question, query = target.partition(b"?")
    if raw[:1] == b"/" and not any(mark in raw for mark in _NOT_PLAIN):
        # nothing to decode, resolve or read otherwise: the path is its
        # own normal form and lenient reading
        text = _text(raw)
        return target, text, text
    path = normalise_path(raw)
    return (
        path + question + query,
        _text(_decode(path, keep_slash=True)),
        _text(lenient_reading(path)),
    )
