# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.unit.test_smuggling,tests.integration.test_smuggling -*-
"""
Header logic of the HTTP vhost, pure (no I/O): reading header values,
Basic credentials and Upgrade requests, and rewriting heads between the
two hops (frp's reverse-proxy rewrite: Host rewrite, ``header_*``,
X-Forwarded-*, X-Real-IP, hop-by-hop headers removed).

Body framing headers are never forwarded as received: h11 reads each
message's framing (the vhost has refused requests whose framing is
ambiguous, see :mod:`~labrelay.server.vhost.request`), and each hop gets
one canonical header from that reading (:func:`body_framing`) while h11
writes the body anew; a response with both Content-Length and
Transfer-Encoding is forwarded chunked, without its Content-Length.
"""

import base64
import binascii

#: Headers that concern one hop only (Go's ReverseProxy list).
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ]
)

#: Body framing headers: never forwarded as received; each hop gets the
#: framing h11 read (:func:`body_framing`), and h11 frames the body anew.
FRAMING = frozenset([b"content-length", b"transfer-encoding"])

#: Request headers the relay sets itself (any value from the user is replaced).
_FORWARDING = frozenset(
    [b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"]
)


def connection_tokens(headers) -> set:
    """Lower-cased tokens of every ``Connection`` header in *headers*."""
    tokens = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return tokens


def header_value(headers, wanted: bytes):
    """The first value of header *wanted* (lower-case) or None."""
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def upgrade_type(headers):
    """The ``Upgrade`` value of a request asking for one, else None (as Go:
    both ``Upgrade`` and a ``Connection: upgrade`` token are needed)."""
    value = header_value(headers, b"upgrade")
    if value and b"upgrade" in connection_tokens(headers):
        return value
    return None


def basic_auth(value) -> tuple:
    """(user, password) from a ``Basic`` credentials header value, or
    ("", "") when there are none or they do not decode."""
    if not value:
        return "", ""
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "", ""
    user, sep, password = decoded.decode("utf-8", "replace").partition(":")
    if not sep:
        return "", ""
    return user, password


def body_framing(headers) -> list:
    """
    The framing header of a message as h11 read its body, from the
    message's h11 headers, written canonically: ``Transfer-Encoding:
    chunked`` (which wins over a Content-Length, RFC 9112 §6.3), else
    ``Content-Length`` as a plain number, else none.
    """
    length = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            return [(b"Transfer-Encoding", b"chunked")]
        if lower == b"content-length":
            length = int(value)
    if length is None:
        return []
    return [(b"Content-Length", b"%d" % length)]


def has_both_framings(headers) -> bool:
    """Whether h11 *headers* carry both Content-Length and
    Transfer-Encoding (a message some peer may frame otherwise)."""
    names = {name.lower() for name, _ in headers}
    return FRAMING <= names


def _hop_filtered(headers, framing=()):
    """*headers* without hop-by-hop headers and those named in
    Connection; the framing headers replaced by *framing* (where the first
    of them was, else at the end)."""
    tokens = connection_tokens(headers) - FRAMING
    pending = list(framing)
    for name, value in headers:
        lower = name.lower()
        if lower in FRAMING:
            yield from pending
            pending = []
        elif lower not in HOP_BY_HOP and lower not in tokens:
            yield name, value
    yield from pending


def rewrite_request_headers(
    headers,
    *,
    client_ip: str,
    original_host: bytes,
    host_rewrite: str = "",
    set_headers=(),
    upgrade=None,
    framing=(),
) -> list:
    """
    The headers frps sends on the work connection for a request with
    *headers* (h11 raw items): hop-by-hop headers removed (Upgrade kept as
    ``Connection: Upgrade`` when *upgrade*), the body framing headers
    replaced by *framing* (:func:`body_framing`), Host rewritten,
    X-Forwarded-For appended, X-Forwarded-Host/-Proto and X-Real-IP set,
    then every ``header_*`` entry of *set_headers* set (framing headers
    excepted).
    """
    prior = []
    out = []
    for name, value in _hop_filtered(headers, framing):
        lower = name.lower()
        if lower == b"x-forwarded-for":
            prior.append(value)
        elif lower in _FORWARDING:
            continue
        elif lower == b"host" and host_rewrite:
            out.append((name, host_rewrite.encode("utf-8")))
        else:
            out.append((name, value))
    if upgrade is not None:
        out += [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]
    ip = client_ip.encode("ascii", "replace")
    out += [
        (b"X-Forwarded-For", b", ".join(prior + [ip])),
        (b"X-Forwarded-Host", original_host),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Real-IP", ip),
    ]
    for key, value in set_headers:
        raw = key.encode("utf-8")
        lower = raw.lower()
        if lower == b"host" or lower in FRAMING:
            # as Go: the Host header is req.Host, not a header_ entry; and
            # the framing is the one h11 read
            continue
        out = [(n, v) for n, v in out if n.lower() != lower]
        out.append((raw, value.encode("utf-8")))
    return out


def response_headers(headers, switching: bool = False) -> list:
    """The headers of a backend response as sent to the user (hop-by-hop
    removed, the framing as h11 read it; a protocol switch keeps
    Connection and Upgrade)."""
    if switching:
        return list(headers)
    return list(_hop_filtered(headers, body_framing(headers)))
