# -*- test-case-name: tests.unit.test_https_proxy,tests.integration.test_https_vhost -*-
"""
The HTTPS vhost (frps ``vhost_https_port``) and its ``type = https``
proxies: a user's connection is routed by the server name of its TLS
ClientHello (:mod:`~labrelay.server.https_sni`), read without terminating
TLS, then relayed untouched to the client, whose local service holds the
certificate and does the TLS.

Routing is the HTTP vhost's (exact name, wildcards, the catch-all ``*``;
:mod:`~labrelay.server.vhost.routes`) on a route table of its own, with
the same domain rules and limits.  A hello that names no proxy (or no
name at all) is answered with a TLS ``unrecognized_name`` alert and the
connection closed, as frps does.  The hello is read within
:data:`~labrelay.server.preface.PREFACE_TIMEOUT` seconds and is at most
:data:`~labrelay.server.https_sni.MAX_HELLO` bytes
(:mod:`~labrelay.server.preface` has the other bounds).
"""

from typing import Optional

from .https_sni import MAX_HELLO, HelloError, read_server_name
from .preface import NamedPort, NamedRouteProxy, Preface, PrefaceError

#: A fatal TLS alert ``unrecognized_name`` (112), byte for byte what frps
#: 0.70 sends for a name it has no proxy for (a TLS 1.2 record).
UNRECOGNIZED_NAME_ALERT = bytes([21, 3, 3, 0, 2, 2, 112])

#: Record headers a hello may be split into, besides the hello itself.
_RECORD_OVERHEAD = 5 * 8


class HttpsVhost(NamedPort):
    """The HTTPS vhost of a relay (see the module docstring)."""

    kind = "https vhost"
    max_preface = MAX_HELLO + _RECORD_OVERHEAD

    def __init__(self, context):
        super().__init__(context, context.config.vhost_https_port)

    def create_proxy(self, control, message) -> "HttpsProxy":
        return HttpsProxy(self.context, control, message, self)

    def read_preface(self, data: bytes) -> Optional[Preface]:
        try:
            hello = read_server_name(data)
        except HelloError as e:
            raise PrefaceError(str(e)) from None
        if hello is None:
            return None
        if not hello.server_name:
            raise PrefaceError(
                "ClientHello without a server name", UNRECOGNIZED_NAME_ALERT
            )
        return Preface(host=hello.server_name, replay=data)

    def not_found(self, user, preface) -> bytes:
        return UNRECOGNIZED_NAME_ALERT


class HttpsProxy(NamedRouteProxy):
    """One ``type = https`` proxy: its domains on the HTTPS vhost."""

    type = "https"
