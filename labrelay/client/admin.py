# -*- test-case-name: tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin,tests.unit.test_admin_fuzz -*-
"""
The client's admin API on ``admin_addr:admin_port``: the routes of frpc
v0.51, for ``labrelay-client reload|status|stop`` and for scripts.

=====================  ==================================================
``GET /healthz``       200, empty; never asks for credentials
``GET /api/status``    the proxies as JSON, keyed by proxy type
``POST /api/reload``   re-read the config file and apply its proxies; 400
                       with the error for a bad file, 500 if applying fails
                       (``GET`` too, as ``frpc reload`` sends it, but only
                       with the configured credentials)
``GET /api/config``    the config file as stored (templates not rendered),
                       trimmed, without ``token`` lines and with the other
                       secrets redacted
``PUT /api/config``    replace the config file (keeping its ``token`` line
                       and the redacted secrets); applied by the next reload
``POST /api/stop``     stop the client shortly after answering; under
                       twistd the process exits with :data:`STOP_EXIT_CODE`
=====================  ==================================================

This module is the resource: the checks every request passes, then the
routes; the config file's routes are :mod:`labrelay.client.admin_config`,
the listener :mod:`labrelay.client.admin_server`.

Every request must name this API in ``Host`` (``localhost``, a loopback
literal, ``admin_addr`` or the address it arrived on: 421 otherwise, which
defeats DNS rebinding) and must not come from another origin (an ``Origin``
other than the API's own, or a ``Sec-Fetch-Site`` saying cross-site: 403),
so a web page cannot drive the API (:mod:`labrelay.localweb`).  A
state-changing route answers only its own method (405 otherwise): a page
can make a browser send a ``GET`` without any of those headers.

When ``admin_user`` or ``admin_pwd`` is set, every route but ``/healthz``
needs basic auth.  A request without credentials is answered 401 after
:data:`~labrelay.web.AUTH_FAIL_DELAY` seconds (as frpc does); credentials
go through the password throttle (:mod:`labrelay.throttle`, by way of
:class:`labrelay.web.BasicAuth`, as every password labrelay checks): after
a wrong guess, every attempt from that source waits 0.5 s doubling to
8 s, parallel ones too, and refused guesses are logged at most once a
minute.

The admin web UI (``GET /``, ``/static/``) and pprof are not served.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.resource import Resource

from ..localweb import HostPolicy, request_denial
from ..throttle import PasswordThrottle
from ..web import (
    AUTH_FAIL_DELAY,
    PAGE_NOT_FOUND,
    TEXT,
    BasicAuth,
    Credentials,
    JsonFormat,
    Reply,
    answer_when_decided,
    plain_text,
)
from .admin_config import reload_config, show_config, store_config

#: Seconds between answering ``POST /api/stop`` and stopping (frp: 100 ms).
STOP_DELAY = 0.1
#: The exit status of a twistd client stopped by ``POST /api/stop``: not 0,
#: so that systemd's ``Restart=on-failure`` brings it back (a SIGTERM, as
#: from ``systemctl stop``, still ends it the way systemd counts as clean:
#: twistd re-raises the signal).  75 is sysexits' EX_TEMPFAIL.
STOP_EXIT_CODE = 75
#: At most one log line per this many seconds for refused Host/Origin.
REFUSAL_LOG_SECONDS = 60
#: ``/api/status`` as labrelay has always written it.
_JSON = JsonFormat(
    content_type=b"application/json", separators=(", ", ": "), no_store=False
)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_status(state, server_addr: str) -> dict:
    """One proxy's ``/api/status`` entry (the field order of frpc)."""
    config = state.config
    if config.type == "tcp":
        # frpc: the configured port while in error, else what frps bound
        # (NewProxyResp says ":port").
        remote = (
            join_host_port(server_addr, config.remote_port)
            if state.error
            else server_addr + state.remote_addr
        )
    else:
        remote = state.remote_addr
    return {
        "name": config.name,
        "type": config.type,
        "status": state.status,
        "err": state.error,
        "local_addr": join_host_port(config.local_ip, config.local_port)
        if config.local_port
        else "",
        "plugin": "",
        "remote_addr": remote,
    }


def status_document(client) -> dict:
    """``/api/status``: proxy type -> entries sorted by name."""
    result: dict = {}
    for state in client.proxies.values():
        result.setdefault(state.config.type, []).append(
            proxy_status(state, client.config.server_addr)
        )
    for entries in result.values():
        entries.sort(key=lambda entry: entry["name"])
    return result


class AdminResource(Resource):
    """Every route of the admin API, for one :class:`RelayClient`."""

    isLeaf = True
    _log = Logger()

    def __init__(self, client, clock):
        super().__init__()
        self.client = client
        self.clock = clock
        self.policy = HostPolicy(client.config.admin_addr)
        self._refusal_log = _OncePer(clock, REFUSAL_LOG_SECONDS)
        self._delayed = set()  # a pending stop
        self._auth_log = _OncePer(clock, REFUSAL_LOG_SECONDS)
        #: admin_user/admin_pwd, read per request (a reload changes them);
        #: wrong guesses are held back per source
        self.auth = BasicAuth(
            clock,
            PasswordThrottle(clock),
            "admin",
            self._credentials,
            self._refused,
            missing_delay=AUTH_FAIL_DELAY,
        )
        self._routes = {
            b"/healthz": {b"GET": self._healthz},
            b"/api/status": {b"GET": self._status},
            b"/api/reload": {b"POST": self._reload, b"GET": self._reload},
            b"/api/config": {b"GET": self._get_config, b"PUT": self._put_config},
            b"/api/stop": {b"POST": self._stop},
        }

    @property
    def throttle(self):
        """The password throttle of this API's credentials."""
        return self.auth.throttle

    def render(self, request):
        path = request.path
        request.setHeader(b"content-type", TEXT)
        denial = request_denial(self.policy, request)
        if denial is not None:
            code, text = denial
            self._log_refusal(request, text.strip())
            return plain_text(request, code, text)
        if path == b"/healthz":
            return self._route(request)
        decided = self.auth.check(request)
        if decided is True:
            return self._route(request)

        def allowed():
            request.write(self._route(request))
            request.finish()

        return answer_when_decided(
            request,
            decided,
            allowed,
            self._log,
            "admin API: answering held credentials",
        )

    def _route(self, request) -> bytes:
        """The answer of an admitted request."""
        path = request.path
        methods = self._routes.get(path)
        if methods is None:
            return plain_text(request, 404, PAGE_NOT_FOUND)
        handler = methods.get(request.method)
        if (
            path == b"/api/reload"
            and request.method == b"GET"
            and not self.auth.required
        ):
            # frpc's "reload" sends GET; a web page can make a browser send
            # one too, so it is only taken with the configured credentials.
            handler = None
        if handler is None:
            request.setResponseCode(405)
            request.setHeader(
                b"allow",
                b", ".join(
                    m for m in methods if not (m == b"GET" and path == b"/api/reload")
                ),
            )
            return b"405 method not allowed\n"
        try:
            body = handler(request)
            code = 200
        except Reply as reply:
            code, body = reply.code, reply.text.encode("utf-8")
        if path != b"/healthz":
            self._log.info(
                "admin API: {method} {path} -> {code}",
                method=request.method.decode("ascii", "replace"),
                path=path.decode("ascii", "replace"),
                code=code,
            )
        request.setResponseCode(code)
        return body

    def _log_refusal(self, request, why: str) -> None:
        # A page can send requests in a loop: one line per
        # REFUSAL_LOG_SECONDS, with the count of those not logged.
        held = self._refusal_log.allow()
        if held is None:
            return
        self._log.warn(
            "admin API: {method} {path} refused: {why} (a web "
            "page, or a foreign Host header?); {more} more "
            "refused since the last such line",
            method=request.method.decode("ascii", "replace"),
            path=request.path[:200].decode("ascii", "replace"),
            why=why,
            more=held,
        )

    def close(self) -> None:
        """Cancel pending delayed answers and a pending stop."""
        self.throttle.close()
        self.auth.close()
        for call in list(self._delayed):
            if call.active():
                call.cancel()
        self._delayed.clear()

    # Authentication.

    def _credentials(self):
        config = self.client.config
        return Credentials.from_config(config.admin_user, config.admin_pwd)

    def _refused(self, request, verdict) -> None:
        """A log line about refused credentials: each request without
        any; at most one per :data:`REFUSAL_LOG_SECONDS` about wrong ones,
        counting those not logged."""
        method = request.method.decode("ascii", "replace")
        if verdict is None:
            self._log.warn(
                "admin API: {method} {path}: wrong or missing credentials",
                method=method,
                path=request.path.decode("ascii", "replace"),
            )
            return
        held = self._auth_log.allow()
        if held is None:
            return
        self._log.warn(
            "admin API: {method} {path}: wrong credentials from "
            "{source} ({outcome}, failure {failures} in a row, "
            "answered after {delay:g}s); {more} more since the "
            "last such line",
            method=method,
            path=request.path[:200].decode("ascii", "replace"),
            source=verdict.source,
            outcome=verdict.outcome,
            failures=verdict.failures,
            delay=verdict.delay,
            more=held,
        )

    # Routes.

    def _healthz(self, request) -> bytes:
        return b""

    def _status(self, request) -> bytes:
        return _JSON.body(request, status_document(self.client))

    def _reload(self, request) -> bytes:
        return reload_config(self.client)

    def _get_config(self, request) -> bytes:
        return show_config(self.client)

    def _put_config(self, request) -> bytes:
        return store_config(self.client, request.content.read())

    def _stop(self, request) -> bytes:
        def stop():
            self._delayed.discard(call)
            self.client.stop_gracefully(STOP_EXIT_CODE)

        call = self.clock.callLater(STOP_DELAY, stop)
        self._delayed.add(call)
        self._log.info("admin API: stopping in {seconds}s", seconds=STOP_DELAY)
        return b""


class _OncePer:
    """Lets one log line through per *seconds*, counting those held."""

    def __init__(self, clock, seconds: float):
        self._clock = clock
        self._seconds = seconds
        self._next = float("-inf")
        self._held = 0

    def allow(self):
        """None to stay silent; else how many were held back since the
        last line allowed."""
        now = self._clock.seconds()
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self._seconds
        return held


__all__ = ["AdminResource", "status_document", "STOP_EXIT_CODE"]
