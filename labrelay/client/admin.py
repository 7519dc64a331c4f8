# -*- test-case-name: tests.test_admin -*-
"""
The client's admin API on ``admin_addr:admin_port``: the routes of frpc
v0.51, for ``labrelay-client reload|status`` and for scripts.

=================  ======================================================
``GET /healthz``   200, empty; never asks for credentials
``GET /api/status`` the proxies as JSON, keyed by proxy type
``GET /api/reload`` re-read the config file and apply its proxies; 400 with
                   the error for a bad file, 500 if applying fails
``GET /api/config`` the rendered config file, trimmed, without ``token``
``PUT /api/config`` replace the config file (keeping its ``token`` line);
                   applied by the next reload only
``POST /api/stop``  stop the client shortly after answering
=================  ======================================================

When ``admin_user`` or ``admin_pwd`` is set, every route but ``/healthz``
needs basic auth; a refusal is answered after :data:`AUTH_FAIL_DELAY`
seconds, on the injected clock, as frpc does.

The admin web UI (``GET /``, ``/static/``) and pprof are not served.
"""

from __future__ import annotations

import hmac
import json
import os

from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ..config import ConfigError
from ..config_ini import IniError, render_template
from ..endpoints import server_endpoint_description
from ..listeners import StartupListener
from ..tracking import ConnectionSet

#: Seconds before a request with wrong credentials gets its 401 (frp: 200 ms).
AUTH_FAIL_DELAY = 0.2
#: Seconds between answering ``POST /api/stop`` and stopping (frp: 100 ms).
STOP_DELAY = 0.1
REALM = b'Basic realm="Restricted"'


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_status(state, server_addr: str) -> dict:
    """One proxy's ``/api/status`` entry (the field order of frpc)."""
    config = state.config
    if config.type == "tcp":
        # frpc: the configured port while in error, else what frps bound
        # (NewProxyResp says ":port").
        remote = join_host_port(server_addr, config.remote_port) \
            if state.error else server_addr + state.remote_addr
    else:
        remote = state.remote_addr
    return {
        "name": config.name, "type": config.type, "status": state.status,
        "err": state.error,
        "local_addr": join_host_port(config.local_ip, config.local_port)
        if config.local_port else "",
        "plugin": "", "remote_addr": remote}


def status_document(client) -> dict:
    """``/api/status``: proxy type -> entries sorted by name."""
    result: dict = {}
    for state in client.proxies.values():
        result.setdefault(state.config.type, []).append(
            proxy_status(state, client.config.server_addr))
    for entries in result.values():
        entries.sort(key=lambda entry: entry["name"])
    return result


def config_for_display(text: str) -> str:
    """``GET /api/config``: every line trimmed, ``token`` lines left out."""
    return "\n".join(line for line in (row.strip() for row in text.split("\n"))
                     if not line.startswith("token"))


def config_to_store(body: str, original: str) -> str:
    """
    ``PUT /api/config``: the body's lines trimmed and without ``token``
    lines; the original file's first ``token`` line is put back after each
    ``[common]`` header, so the secret never has to travel.
    """
    token = next((row.strip() for row in original.split("\n")
                  if row.strip().startswith("token")), "")
    rows = []
    for row in body.split("\n"):
        row = row.strip()
        if row.startswith("token"):
            continue
        rows.append(row)
        if token and row.startswith("[common]"):
            rows.append(token)
    return "\n".join(rows)


class _Reply(Exception):
    """Ends a handler with this status code and text."""

    def __init__(self, code: int, text: str = ""):
        super().__init__(text)
        self.code = code
        self.text = text


class AdminResource(Resource):
    """Every route of the admin API, for one :class:`RelayClient`."""

    isLeaf = True
    _log = Logger()

    def __init__(self, client, clock):
        super().__init__()
        self.client = client
        self.clock = clock
        self._delayed = set()  # pending 401 answers and the stop
        self._routes = {
            b"/healthz": {b"GET": self._healthz},
            b"/api/status": {b"GET": self._status},
            b"/api/reload": {b"GET": self._reload},
            b"/api/config": {b"GET": self._get_config,
                             b"PUT": self._put_config},
            b"/api/stop": {b"POST": self._stop},
        }

    def render(self, request):
        path = request.path
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if path != b"/healthz" and not self._authorized(request):
            return self._refuse(request)
        methods = self._routes.get(path)
        if methods is None:
            request.setResponseCode(404)
            return b"404 page not found\n"
        handler = methods.get(request.method)
        if handler is None:
            request.setResponseCode(405)
            return b""
        try:
            text = handler(request)
            code = 200
        except _Reply as reply:
            code, text = reply.code, reply.text
        if path != b"/healthz":
            self._log.info("admin API: {method} {path} -> {code}",
                           method=request.method.decode("ascii", "replace"),
                           path=path.decode("ascii", "replace"), code=code)
        request.setResponseCode(code)
        return text.encode("utf-8")

    def close(self) -> None:
        """Cancel pending delayed answers and a pending stop."""
        for call in list(self._delayed):
            if call.active():
                call.cancel()
        self._delayed.clear()

    # Authentication.

    def _authorized(self, request) -> bool:
        config = self.client.config
        if not config.admin_user and not config.admin_pwd:
            return True
        # Both compared, always: no early exit that times the user name.
        user_ok = hmac.compare_digest(request.getUser(),
                                      config.admin_user.encode("utf-8"))
        pwd_ok = hmac.compare_digest(request.getPassword(),
                                     config.admin_pwd.encode("utf-8"))
        return user_ok and pwd_ok

    def _refuse(self, request):
        self._log.warn("admin API: {method} {path}: wrong or missing "
                       "credentials", method=request.method.decode(
                           "ascii", "replace"),
                       path=request.path.decode("ascii", "replace"))
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", REALM)

        def answer():
            self._delayed.discard(call)
            request.write(b"Unauthorized\n")
            request.finish()

        call = self.clock.callLater(AUTH_FAIL_DELAY, answer)
        self._delayed.add(call)

        def gone(failure):
            if call.active():
                call.cancel()
            self._delayed.discard(call)

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET

    # Routes.

    def _healthz(self, request) -> str:
        return ""

    def _status(self, request) -> str:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(status_document(self.client))

    def _reload(self, request) -> str:
        try:
            self.client.reload()
        except ConfigError as e:
            self._log.warn("reload: {error}; nothing changed", error=e)
            raise _Reply(400, str(e))
        except Exception as e:
            self._log.failure("reload failed")
            raise _Reply(500, f"reload failed: {e}")
        return ""

    def _config_path(self) -> str:
        path = self.client.config_path
        if not path:
            raise _Reply(400, "labrelay-client has no config file path")
        return path

    def _read(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise _Reply(400, f"{path}: cannot read: {e}")

    def _get_config(self, request) -> str:
        path = self._config_path()
        try:
            text = render_template(self._read(path), os.environ)
        except IniError as e:
            raise _Reply(400, f"{path}: {e}")
        return config_for_display(text)

    def _put_config(self, request) -> str:
        body = request.content.read()
        if not body:
            raise _Reply(400, "body can't be empty")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Reply(400, "body is not UTF-8 text")
        path = self._config_path()
        content = config_to_store(text, self._read(path))
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
        except OSError as e:
            raise _Reply(500, f"write content to {path} failed: {e}")
        self._log.info("admin API: {path} rewritten; GET /api/reload applies "
                       "it", path=path)
        return ""

    def _stop(self, request) -> str:
        def stop():
            self._delayed.discard(call)
            self.client.stop_gracefully()

        call = self.clock.callLater(STOP_DELAY, stop)
        self._delayed.add(call)
        self._log.info("admin API: stopping in {seconds}s",
                       seconds=STOP_DELAY)
        return ""


class _QuietSite(Site):
    """A Site without the access log (the resource logs each call)."""

    noisy = False

    def log(self, request):
        pass


class _TrackingFactory(WrappingFactory):
    """Counts the admin connections, so a stop can close them all."""

    noisy = False

    def __init__(self, factory, connections: ConnectionSet):
        super().__init__(factory)
        self.connections = connections

    def logPrefix(self):
        # "admin API starting on 7400" in the log
        return "admin API"

    def registerProtocol(self, p):
        super().registerProtocol(p)
        self.connections.add(p)

    def unregisterProtocol(self, p):
        super().unregisterProtocol(p)
        self.connections.remove(p)


class AdminServer:
    """
    The admin API's listener (a start-up listener: a port already taken
    fails start-up) and its open connections.

    :param description: an endpoint description to listen on.
    """

    def __init__(self, client, reactor, description: str):
        self.resource = AdminResource(client, reactor)
        self.connections = ConnectionSet()
        site = _QuietSite(self.resource, reactor=reactor)
        self.service = StartupListener(
            reactor, description, _TrackingFactory(site, self.connections),
            program="labrelay-client", setting="admin_addr:admin_port")

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        return self.service.when_listening()

    def close(self):
        """Cancel pending answers, close every admin connection; a Deferred
        firing once they are gone."""
        self.resource.close()
        return self.connections.close_all()


def admin_description(addr: str, port: int) -> str:
    """The endpoint description of ``admin_addr:admin_port``."""
    return server_endpoint_description(addr, port)


__all__ = ["AdminServer", "AdminResource", "status_document",
           "config_for_display", "config_to_store", "admin_description",
           "AUTH_FAIL_DELAY"]
