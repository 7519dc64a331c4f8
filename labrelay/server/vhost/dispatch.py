# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.unit.test_vhost_paths,tests.integration.test_vhost_paths,tests.unit.test_smuggling,tests.integration.test_smuggling -*-
"""
What one request head on the vhost becomes: a request forwarded to the
proxy that its Host, path and Basic-auth user pick (:class:`Forward`), or
an answer from the vhost itself (:class:`Answer`; :class:`Refusal` when
the connection must close at once).  :func:`dispatch` decides without I/O;
the front connection (:mod:`~labrelay.server.vhost.front`) acts on the
decision, checks the proxy's Basic auth and starts the exchange.

The checks, in order: the head's body framing (400 and close;
:mod:`~labrelay.server.vhost.request`), the Host (taken from an
absolute-form target first; none is 400), the request target (400), a
Host with more than one trailing dot (400), the route (404, or 400 when
the path could be read as another route's by a lax backend).  Each
decision carries its log line, if any, as a format and its fields.
"""

from typing import Optional, Union
from urllib.parse import urlsplit

import attrs

from .access_log import clf_escape
from .headers import basic_auth, header_value
from .pages import HTML, TEXT
from .request import BadRequest, framing_problem, route_target
from .routes import request_host

__all__ = ["Answer", "Forward", "Refusal", "dispatch"]


@attrs.frozen
class Forward:
    """Forward the request to *proxy* (after its Basic auth)."""

    proxy: object
    target: bytes  # origin-form, normalised: what the backend gets
    headers: list  # as received (Host from an absolute-form target)
    host: bytes  # the Host as received (X-Forwarded-Host)
    user: str  # Basic-auth credentials, "" when none
    password: str
    absolute: bool  # an absolute-form target: auth is 407, not 401


@attrs.frozen
class Answer:
    """Answer the request from the vhost; keep the connection if the
    request was read whole and *close* is false."""

    status: int
    body: bytes
    content_type: bytes = TEXT
    close: bool = False
    user: Optional[str] = None  # the Basic-auth user, once read (access log)
    log: str = ""  # an info line after "{peer}: ", if any
    log_fields: dict = attrs.field(factory=dict)


@attrs.frozen
class Refusal:
    """Refuse the request (*status*, *text*) and close the connection:
    nothing after it on the connection is read as a request."""

    status: int
    text: str
    log: str
    log_fields: dict = attrs.field(factory=dict)


def dispatch(
    request, head: bytes, routes, not_found_page: bytes
) -> Union[Forward, Answer, Refusal]:
    """
    The decision for *request* (an ``h11.Request``) whose head, as
    received, is *head*, on the route table *routes*; a 404 answers
    *not_found_page*.
    """
    problem = framing_problem(head, request.http_version)
    if problem is not None:
        return Refusal(
            400,
            f"ambiguous request framing: {problem}",
            "ambiguous request framing ({problem}); closing",
            {"problem": problem},
        )
    headers = request.headers.raw_items()
    target = request.target
    host = header_value(headers, b"host")
    absolute = target[:7].lower() == b"http://" or target[:8].lower() == b"https://"
    if absolute:
        host = urlsplit(target).netloc
        # the rest of the target as sent (query and any fragment too)
        rest = target[target.index(b"//") + 2 + len(host) :]
        target = rest if rest.startswith(b"/") else b"/" + rest
        headers = [(n, host if n.lower() == b"host" else v) for n, v in headers]
    if not host or not host.strip():
        return Answer(400, b"Bad Request: no Host header\n", close=True)
    try:
        target, path, lenient = route_target(request.method, target)
    except BadRequest as e:
        return Answer(
            400,
            f"Bad Request: {e}\n".encode(),
            log="bad request target {target}: {error}",
            log_fields={"target": clf_escape(request.target), "error": e},
        )
    credentials = None
    if absolute:
        credentials = header_value(headers, b"proxy-authorization")
    if not credentials:
        credentials = header_value(headers, b"authorization")
    user, password = basic_auth(credentials)
    name = request_host(host.decode("latin-1"))
    if name.endswith("."):
        # "example.com." is the absolute form of example.com; a second
        # trailing dot makes no host name at all
        return Answer(
            400, b"Bad Request: invalid Host (more than one trailing dot)\n", user=user
        )
    proxy = routes.lookup(name, path, user)
    if lenient != path and routes.lookup(name, lenient, user) is not proxy:
        return Answer(
            400,
            b"Bad Request: ambiguous path\n",
            user=user,
            log="path {path} could be read as another route's",
            log_fields={"path": clf_escape(target[:200])},
        )
    if proxy is None:
        return Answer(
            404,
            not_found_page,
            HTML,
            user=user,
            log="no route for {host}{path}",
            log_fields={"host": clf_escape(name), "path": clf_escape(path[:200])},
        )
    return Forward(proxy, target, headers, host, user, password, absolute)
