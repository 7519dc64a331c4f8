# -*- test-case-name: tests.unit.test_tcpmux,tests.integration.test_tcpmux -*-
"""
The tcpmux port (frps ``tcpmux_httpconnect_port``) and its ``type =
tcpmux`` proxies (``multiplexer = httpconnect``): many TCP services on one
port, each chosen by the host of an HTTP ``CONNECT`` request, as SSH's
``ProxyCommand`` sends it.

A connection must open with a ``CONNECT host:port HTTP/1.1`` request head
(parsed with h11, at most :data:`MAX_CONNECT_HEAD` bytes, complete within
:data:`~labrelay.server.preface.PREFACE_TIMEOUT` seconds).  The host
(port and one trailing dot dropped, lower-cased) is routed as the HTTP
vhost routes a Host (:mod:`~labrelay.server.vhost.routes`: exact name,
wildcards, ``*``), with the ``Proxy-Authorization`` Basic user for
``route_by_http_user``.  What goes back, byte for byte as frps writes it:

* routed: ``HTTP/1.1 200 OK`` with ``Content-Length: 0``, then the
  connection is relayed; with ``tcpmux_passthrough = true`` nothing is
  answered and the CONNECT head itself goes to the backend first;
* a proxy with ``http_user`` and other credentials: ``407 Proxy
  Authentication Required`` and the close.  Wrong guesses go through the
  server's password throttle (:mod:`labrelay.throttle`).  frps writes its
  ``200`` before checking, so a refused client reads both; labrelay
  writes only the 407;
* no route: frp's ``404 Not Found`` page (``custom_404_page`` if set) and
  the close;
* not a CONNECT, or a malformed head: the close, without an answer (frps).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Optional

import h11
from twisted.internet.defer import succeed
from twisted.logger import Logger

from .. import FRP_VERSION
from ..errors import ProxyError
from ..peers import host_port
from ..throttle import PASS
from .preface import NamedPort, NamedRouteProxy, Preface, PrefaceError
from .vhost.front import MAX_HEAD
from .vhost.pages import load_not_found_page
from .vhost.routes import request_host

#: Largest CONNECT request head (the HTTP vhost's bound on a head).
MAX_CONNECT_HEAD = MAX_HEAD

#: frps's answer to a routed CONNECT (Go's ``http.Response.Write`` of an
#: empty 200).
CONNECT_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#: frps's answer to a CONNECT with wrong or no credentials.
PROXY_UNAUTHORIZED = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="Restricted"\r\n'
    b"Content-Length: 0\r\n\r\n"
)

_HEAD_END = re.compile(rb"\r?\n\r?\n")


def not_found_answer(page: bytes) -> bytes:
    """frps's 404 for a CONNECT to an unknown host, with *page*."""
    return (
        b"HTTP/1.1 404 Not Found\r\n"
        + f"Content-Length: {len(page)}\r\n".encode()
        + b"Content-Type: text/html\r\n"
        + f"Server: frp/{FRP_VERSION}\r\n\r\n".encode()
        + page
    )


def basic_credentials(value: bytes) -> tuple:
    """(user, password) of a ``Basic`` credentials value, or ``("", "")``
    (as Go's ``ParseBasicAuth``: the scheme case-insensitive, standard
    base64, split at the first colon)."""
    if len(value) < 6 or value[:6].lower() != b"basic ":
        return "", ""
    try:
        decoded = base64.b64decode(value[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else ("", "")


def read_connect(data: bytes) -> Optional[Preface]:
    """
    The CONNECT request at the start of *data* as a
    :class:`~labrelay.server.preface.Preface` (its ``replay`` is what
    follows the head), None while the head is incomplete;
    :class:`~labrelay.server.preface.PrefaceError` when it is not a
    CONNECT request.
    """
    end = _HEAD_END.search(data)
    if end is None:
        if data and not data[:1].isalpha():
            raise PrefaceError("not an HTTP request")
        return None
    head, rest = data[: end.end()], data[end.end() :]
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
    parser.receive_data(head)
    try:
        request = parser.next_event()
    except h11.RemoteProtocolError as e:
        raise PrefaceError(f"bad request head: {e}") from None
    if not isinstance(request, h11.Request):
        raise PrefaceError("bad request head")
    if request.method != b"CONNECT":
        raise PrefaceError("connections to the tcpmux port must use CONNECT")
    user = password = ""
    for name, value in request.headers:
        if name == b"proxy-authorization":
            user, password = basic_credentials(value)
            break
    try:
        host = request.target.decode("ascii")
    except UnicodeDecodeError:
        raise PrefaceError("CONNECT target is not ASCII") from None
    return Preface(host=request_host(host), replay=rest, user=user, password=password)


class TcpMuxPort(NamedPort):
    """The tcpmux HTTP CONNECT port of a relay (see the module
    docstring)."""

    _log = Logger()
    kind = "tcpmux"
    max_preface = MAX_CONNECT_HEAD

    def __init__(self, context):
        config = context.config
        super().__init__(context, config.tcpmux_httpconnect_port)
        self.passthrough = config.tcpmux_passthrough
        page = load_not_found_page(config.custom_404_page, self._log)
        self.not_found_bytes = not_found_answer(page)

    def create_proxy(self, control, message) -> TcpMuxProxy:
        return TcpMuxProxy(self.context, control, message, self)

    def read_preface(self, data: bytes) -> Optional[Preface]:
        preface = read_connect(data)
        if preface is not None and self.passthrough:
            preface = Preface(
                host=preface.host,
                replay=data,
                user=preface.user,
                password=preface.password,
            )
        return preface

    def not_found(self, user, preface) -> bytes:
        return self.not_found_bytes

    def authorize(self, user, proxy, preface):
        if not proxy.http_user:  # frps checks only when a user is set
            return succeed(True)
        if not (preface.user or preface.password):
            return succeed(False)  # no guess: refused, not counted
        client_ip = host_port(user.transport.getPeer())[0] or "-"
        decided = self.context.throttle.check(
            "tcpmux",
            client_ip,
            proxy.name,
            lambda: proxy.check_auth(preface.user, preface.password),
        )

        def verdict(verdict):
            if verdict.outcome == PASS:
                return True
            self.context.log_auth_failure(
                user.peer, f"wrong credentials for proxy [{proxy.name}]", verdict
            )
            return False

        return decided.addCallback(verdict)

    def unauthorized(self, preface) -> bytes:
        return PROXY_UNAUTHORIZED

    def accepted(self, preface) -> bytes:
        return b"" if self.passthrough else CONNECT_OK


class TcpMuxProxy(NamedRouteProxy):
    """One ``type = tcpmux`` proxy (``multiplexer = httpconnect``)."""

    type = "tcpmux"

    def __init__(self, context, control, message, port):
        super().__init__(context, control, message, port)
        self.http_user = message.http_user
        self.http_pwd = message.http_pwd
        self.route_by_http_user = message.route_by_http_user

    def start(self) -> str:
        if self.message.multiplexer != "httpconnect":
            raise ProxyError(f"unknown multiplexer [{self.message.multiplexer}]")
        return super().start()

    def check_auth(self, user: str, password: str) -> bool:
        return hmac.compare_digest(
            user.encode(), self.http_user.encode()
        ) & hmac.compare_digest(password.encode(), self.http_pwd.encode())
