# -*- test-case-name: tests.unit.test_logs,tests.integration.test_logs,tests.system.test_logs -*-
"""
The vhost's access log: one line per request (info, namespace
``labrelay.access``) when its response ends, in the combined log format
plus searchable fields::

    client_ip - user [time] "METHOD path HTTP/1.1" status bytes_sent
    "referer" "user-agent" host=... proxy=... duration_ms=...

``user`` is the basic-auth user name sent (``-`` without one), ``time``
when the request head arrived (UTC), ``bytes_sent`` the response body's
size, ``proxy`` the proxy that served it (``-`` when none did).  A protocol
switch is logged when it happens (101); a request whose user left before
any response is logged as 499; a refusal before a request line was parsed
(408, 400) as ``"-"``.  Request text is escaped as nginx does (``"``, ``\\``
and non-printable bytes as ``\\xHH``).

:class:`AccessRecord` gathers one request's fields as it goes (the front
connection fills it in); :func:`write_access_line` writes it.
"""

import time

from twisted.logger import Logger

from ...logs import quote

#: The access log's own namespace, so it can be filtered or routed apart
#: (a module-level Logger: as a class attribute it would take the class's).
_access_log = Logger(namespace="labrelay.access")

_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


#: Bytes a combined-log field shows as themselves (with and without the
#: space): printable ASCII but ``"`` and ``\\``.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
_PLAIN_NO_SPACE = _PLAIN.replace(b" ", b"")


def clf_escape(value, space: bool = False) -> str:
    """*value* (bytes or str) for a combined-log field: ``"``, ``\\`` and
    bytes outside 0x20-0x7e (and spaces too when *space*) become ``\\xHH``,
    as nginx writes them; ``-`` when empty."""
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    if not value:
        return "-"
    if not value.translate(None, _PLAIN_NO_SPACE if space else _PLAIN):
        return value.decode("ascii")  # nothing to escape (the usual case)
    out = []
    for byte in value:
        if (
            byte == 0x22
            or byte == 0x5C
            or byte < 0x20
            or byte > 0x7E
            or (space and byte == 0x20)
        ):
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def clf_time(seconds: float) -> str:
    """``10/Oct/2000:13:55:36 +0000`` (UTC; month names not localised)."""
    whole = int(seconds // 1)
    if whole != _last_time[0]:  # a busy vhost logs many lines per second
        t = time.gmtime(whole)
        _last_time[:] = (
            whole,
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000",
        )
    return _last_time[1]


#: The last second :func:`clf_time` wrote, and its text.
_last_time = [None, ""]


class AccessRecord:
    """What the access-log line of one request says, gathered as it goes."""

    __slots__ = (
        "started",
        "request",
        "referer",
        "user_agent",
        "host",
        "user",
        "proxy",
        "status",
        "bytes_sent",
    )

    def __init__(self, started: float, request=None):
        self.started = started
        self.request = "-" if request is None else clf_escape(request)
        self.referer = self.user_agent = self.host = b""
        self.user = ""
        self.proxy = "-"
        self.status = 0
        self.bytes_sent = 0

    @classmethod
    def of(cls, started: float, request) -> "AccessRecord":
        """The record of h11 *request*."""
        record = cls(
            started,
            b"%s %s HTTP/%s" % (request.method, request.target, request.http_version),
        )
        # one pass over the (lower-cased) headers, the first of each kept
        for name, value in reversed(request.headers):
            if name == b"referer":
                record.referer = value
            elif name == b"user-agent":
                record.user_agent = value
            elif name == b"host":
                record.host = value
        return record


def write_access_line(
    record: AccessRecord, client_ip: str, now: float, status_if_none: int = 0
) -> None:
    """
    Write *record*'s line (*status_if_none* when no status was sent).

    The line is written out here, once, and the event's format has only it
    and the duration: every field is already escaped (printable), and a
    text observer's escaping formatter costs per field.  The fields stay
    in the event as themselves, for structured observers.
    """
    status = record.status or status_if_none
    user = clf_escape(record.user, space=True)
    received = clf_time(record.started)
    referer = clf_escape(record.referer)
    user_agent = clf_escape(record.user_agent)
    host = quote(record.host.decode("latin-1"))
    proxy = quote(record.proxy)
    _access_log.info(
        "{access_line} duration_ms={duration_ms}",
        access_line=(
            f'{client_ip} - {user} [{received}] "{record.request}" {status} '
            f'{record.bytes_sent} "{referer}" "{user_agent}" host={host} '
            f"proxy={proxy}"
        ),
        client_ip=client_ip,
        user=user,
        received=received,
        request=record.request,
        status=status,
        bytes_sent=record.bytes_sent,
        referer=referer,
        user_agent=user_agent,
        host=host,
        proxy=proxy,
        duration_ms=round((now - record.started) * 1000),
    )
