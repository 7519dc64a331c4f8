# -*- test-case-name: tests.test_admin -*-
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

Every request must name this API in ``Host`` (``localhost``, a loopback
literal, ``admin_addr`` or the address it arrived on: 421 otherwise, which
defeats DNS rebinding) and must not come from another origin (an ``Origin``
other than the API's own, or a ``Sec-Fetch-Site`` saying cross-site: 403),
so a web page cannot drive the API (:mod:`labrelay.localweb`).  A
state-changing route answers only its own method (405 otherwise): a page
can make a browser send a ``GET`` without any of those headers.

When ``admin_user`` or ``admin_pwd`` is set, every route but ``/healthz``
needs basic auth.  A request without credentials is answered 401 after
:data:`AUTH_FAIL_DELAY` seconds (as frpc does); credentials go through the
password throttle (:mod:`labrelay.throttle`, as every password labrelay
checks): after a wrong guess, every attempt from that source waits 0.5 s
doubling to 8 s, parallel ones too, and refused guesses are logged at most
once a minute.  Without a password on an
address other than the loopback, start-up logs a loud warning.

The admin web UI (``GET /``, ``/static/``) and pprof are not served.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re

from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ..config import ConfigError
from ..endpoints import server_endpoint_description
from ..listeners import StartupListener
from ..localweb import HostPolicy, request_denial
from ..throttle import PASS, PasswordThrottle
from ..tracking import ConnectionSet

#: Seconds before a request with wrong credentials gets its 401 (frp: 200 ms).
AUTH_FAIL_DELAY = 0.2
#: Seconds between answering ``POST /api/stop`` and stopping (frp: 100 ms).
STOP_DELAY = 0.1
#: The exit status of a twistd client stopped by ``POST /api/stop``: not 0,
#: so that systemd's ``Restart=on-failure`` brings it back (a SIGTERM, as
#: from ``systemctl stop``, still ends it the way systemd counts as clean:
#: twistd re-raises the signal).  75 is sysexits' EX_TEMPFAIL.
STOP_EXIT_CODE = 75
REALM = b'Basic realm="Restricted"'
#: At most one log line per this many seconds for refused Host/Origin.
REFUSAL_LOG_SECONDS = 60
#: Keys whose values ``GET /api/config`` does not show (``token`` lines are
#: left out altogether, as frpc does).
SECRET_KEYS = frozenset({"admin_pwd", "oidc_client_secret", "http_pwd",
                         "sk", "group_key", "plugin_http_passwd"})
#: What ``GET /api/config`` shows instead of a secret; ``PUT`` puts the
#: stored value back where it finds it.
REDACTED = "<redacted>"
_KEY_LINE = re.compile(r"([^=:\s][^=:]*?)\s*[=:]\s*(.*)\Z")


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


def _sections(text: str):
    """``(section, key or None, trimmed line)`` for each line of INI text
    (key lower-cased; None for headers, comments and blank lines)."""
    section = ""
    for row in text.split("\n"):
        line = row.strip()
        key = None
        if line.startswith("[") and "]" in line:
            section = line[1:line.index("]")].strip()
        elif line and line[0] not in "#;":
            match = _KEY_LINE.match(line)
            if match:
                key = match.group(1).strip().lower()
        yield section, key, line


def config_for_display(text: str) -> str:
    """
    ``GET /api/config``: every line trimmed, ``token`` lines left out (as
    frpc), the value of every :data:`SECRET_KEYS` key replaced by
    :data:`REDACTED`.  *text* is the file as stored: a template such as
    ``{{ .Envs.FRP_TOKEN }}`` is never rendered here, so what the
    environment holds is not shown.
    """
    lines = []
    for _, key, line in _sections(text):
        if line.startswith("token"):
            continue
        if key in SECRET_KEYS:
            line = line[:_KEY_LINE.match(line).start(2)] + REDACTED
        lines.append(line)
    return "\n".join(lines)


def config_to_store(body: str, original: str) -> str:
    """
    ``PUT /api/config``: the body's lines trimmed and without ``token``
    lines; the original file's first ``token`` line is put back after each
    ``[common]`` header, and a secret written as :data:`REDACTED` gets the
    original's value for the same section and key back (or is left out),
    so no secret has to travel.
    """
    token = next((row.strip() for row in original.split("\n")
                  if row.strip().startswith("token")), "")
    secrets = {(section, key): line for section, key, line
               in _sections(original) if key in SECRET_KEYS}
    rows = []
    for section, key, row in _sections(body):
        if row.startswith("token"):
            continue
        if key in SECRET_KEYS and \
                _KEY_LINE.match(row).group(2) == REDACTED:
            row = secrets.get((section, key))
            if row is None:
                continue
        rows.append(row)
        if token and row.startswith("[common]"):
            rows.append(token)
    return "\n".join(rows)


def exposure_warning(config):
    """
    The warning to log at start when the admin API answers anyone who
    reaches it (no ``admin_user``/``admin_pwd``) on an address other than
    the loopback; None when not.
    """
    if config.admin_user or config.admin_pwd:
        return None
    addr = config.admin_addr.strip().strip("[]")
    try:
        if addr != "" and (addr == "localhost" or
                           ipaddress.ip_address(addr).is_loopback):
            return None
    except ValueError:
        pass  # a host name: may be anything
    return (f"the admin API on admin_addr = {config.admin_addr or '0.0.0.0'}"
            f", port {config.admin_port} has NO PASSWORD and is not on the "
            f"loopback: anyone who can reach it can read the config, "
            f"stop the client and add proxies to this machine's services. "
            f"Set admin_user and admin_pwd, or admin_addr = 127.0.0.1")


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
        self.policy = HostPolicy(client.config.admin_addr)
        self._refusal_log = _OncePer(clock, REFUSAL_LOG_SECONDS)
        self._delayed = set()  # pending 401 answers and the stop
        self._auth_log = _OncePer(clock, REFUSAL_LOG_SECONDS)
        #: wrong admin_user/admin_pwd guesses are held back per source
        self.throttle = PasswordThrottle(clock)
        self._routes = {
            b"/healthz": {b"GET": self._healthz},
            b"/api/status": {b"GET": self._status},
            b"/api/reload": {b"POST": self._reload, b"GET": self._reload},
            b"/api/config": {b"GET": self._get_config,
                             b"PUT": self._put_config},
            b"/api/stop": {b"POST": self._stop},
        }

    def render(self, request):
        path = request.path
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        denial = request_denial(self.policy, request)
        if denial is not None:
            code, text = denial
            self._log_refusal(request, text.strip())
            request.setResponseCode(code)
            return text.encode("utf-8")
        if path == b"/healthz" or not self._has_credentials():
            return self._route(request)
        if not (request.getUser() or request.getPassword()):
            return self._refuse(request)   # no guess: not counted
        verdicts = []
        decided = self.throttle.check(
            "admin", getattr(request.getClientAddress(), "host", ""),
            request.getUser().decode("utf-8", "replace"),
            lambda: self._authorized(request))
        decided.addCallback(verdicts.append)
        if verdicts and verdicts[0].outcome == PASS:
            return self._route(request)
        return self._held(request, decided, verdicts)

    def _held(self, request, decided, verdicts):
        """Answer *request* once the throttle has decided on it."""
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def answer(_):
            if gone:
                return
            if verdicts[0].outcome == PASS:
                body = self._route(request)
                request.write(body)
                request.finish()
                return
            self._log_auth_failure(request, verdicts[0])
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", REALM)
            request.write(b"Unauthorized\n")
            request.finish()

        decided.addCallback(answer)
        decided.addErrback(lambda f: self._log.failure(
            "admin API: answering held credentials", f))
        return NOT_DONE_YET

    def _log_auth_failure(self, request, verdict) -> None:
        """At most one line per :data:`REFUSAL_LOG_SECONDS` about refused
        credentials, counting those not logged."""
        held = self._auth_log.allow()
        if held is None:
            return
        self._log.warn("admin API: {method} {path}: wrong credentials from "
                       "{source} ({outcome}, failure {failures} in a row, "
                       "answered after {delay:g}s); {more} more since the "
                       "last such line",
                       method=request.method.decode("ascii", "replace"),
                       path=request.path[:200].decode("ascii", "replace"),
                       source=verdict.source, outcome=verdict.outcome,
                       failures=verdict.failures, delay=verdict.delay,
                       more=held)

    def _route(self, request) -> bytes:
        """The answer of an admitted request."""
        path = request.path
        methods = self._routes.get(path)
        if methods is None:
            request.setResponseCode(404)
            return b"404 page not found\n"
        handler = methods.get(request.method)
        if path == b"/api/reload" and request.method == b"GET" \
                and not self._has_credentials():
            # frpc's "reload" sends GET; a web page can make a browser send
            # one too, so it is only taken with the configured credentials.
            handler = None
        if handler is None:
            request.setResponseCode(405)
            request.setHeader(b"allow", b", ".join(
                m for m in methods
                if not (m == b"GET" and path == b"/api/reload")))
            return b"405 method not allowed\n"
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

    def _log_refusal(self, request, why: str) -> None:
        # A page can send requests in a loop: one line per
        # REFUSAL_LOG_SECONDS, with the count of those not logged.
        held = self._refusal_log.allow()
        if held is None:
            return
        self._log.warn("admin API: {method} {path} refused: {why} (a web "
                       "page, or a foreign Host header?); {more} more "
                       "refused since the last such line",
                       method=request.method.decode("ascii", "replace"),
                       path=request.path[:200].decode("ascii", "replace"),
                       why=why, more=held)

    def close(self) -> None:
        """Cancel pending delayed answers and a pending stop."""
        self.throttle.close()
        for call in list(self._delayed):
            if call.active():
                call.cancel()
        self._delayed.clear()

    # Authentication.

    def _has_credentials(self) -> bool:
        config = self.client.config
        return bool(config.admin_user or config.admin_pwd)

    def _authorized(self, request) -> bool:
        config = self.client.config
        if not self._has_credentials():
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
        # As stored: rendering {{ .Envs.X }} here would hand the
        # environment (a token kept out of the file) to the caller.
        return config_for_display(self._read(self._config_path()))

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
        self._log.info("admin API: {path} rewritten; POST /api/reload "
                       "applies it", path=path)
        return ""

    def _stop(self, request) -> str:
        def stop():
            self._delayed.discard(call)
            self.client.stop_gracefully(STOP_EXIT_CODE)

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


class AdminServer:
    """
    The admin API's listener (a start-up listener: a port already taken
    fails start-up) and its open connections.

    :param description: an endpoint description to listen on.
    """

    _log = Logger()

    def __init__(self, client, reactor, description: str):
        warning = exposure_warning(client.config)
        if warning is not None:
            self._log.critical("{exposure}", exposure=warning)
        self.description = description
        self.resource = AdminResource(client, reactor)
        self.connections = ConnectionSet()
        site = _QuietSite(self.resource, reactor=reactor)
        self._factory = _TrackingFactory(site, self.connections)
        self._reactor = reactor
        self._port = None
        self.service = StartupListener(
            reactor, description, self._factory,
            program="labrelay-client", setting="admin_addr:admin_port")

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        if self._port is not None:
            return succeed(self._port)
        return self.service.when_listening()

    def listen(self):
        """Listen now, outside start-up (a reload): a Deferred firing with
        the IListeningPort, or failing with the bind error (nothing to
        stop then)."""
        d = serverFromString(self._reactor, self.description).listen(
            self._factory)

        def listening(port):
            self._port = port
            return port
        return d.addCallback(listening)

    def stop_listening(self):
        """Stop accepting (a reload moved or turned off the API); requests
        already under way, such as the one that asked for the reload, are
        answered.  A Deferred."""
        if self._port is not None:
            port, self._port = self._port, None
            return maybeDeferred(port.stopListening)
        if self.service.parent is not None:
            return maybeDeferred(self.service.disownServiceParent)
        return succeed(None)

    def close(self):
        """Stop listening, cancel pending answers, close every admin
        connection; a Deferred firing once they are gone."""
        self.resource.close()
        stopped = self.stop_listening()
        closed = self.connections.close_all()
        return stopped.addCallback(lambda _: closed)


def admin_description(addr: str, port: int) -> str:
    """The endpoint description of ``admin_addr:admin_port``."""
    return server_endpoint_description(addr, port)


__all__ = ["AdminServer", "AdminResource", "status_document",
           "config_for_display", "config_to_store", "admin_description",
           "exposure_warning", "AUTH_FAIL_DELAY", "STOP_EXIT_CODE"]
