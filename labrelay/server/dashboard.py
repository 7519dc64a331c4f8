# -*- test-case-name: tests.test_dashboard,tests.test_metrics,tests.test_dashboard_browser -*-
"""
The server dashboard: frp's HTTP API (v0.51 routes and JSON field names), a
web page, and Prometheus metrics, on ``dashboard_addr:dashboard_port``.

Routes (all ``GET``; JSON bodies, plain-text errors, as frps):

* ``/healthz``: 200, empty; never asks for credentials.
* ``/api/serverinfo``, ``/api/proxy/{type}``, ``/api/proxy/{type}/{name}``,
  ``/api/traffic/{name}``: frp's, field for field (the traffic totals are
  today's; ``/api/traffic`` lists 7 days, today first; times are local
  ``MM-DD hh:mm:ss``; an unknown name is 404 ``no proxy info found``).
  Proxies that went offline stay listed, with ``conf`` null as in frp.
* ``/api/clients`` (labrelay's own): the clients online with their address,
  user, version, uptime in seconds and proxy names (not their run_id,
  which identifies a client's session to the relay).
* ``/api/history?offset=N&limit=M`` (labrelay's own): per proxy, bytes in
  and out per :data:`~labrelay.server.stats.BUCKET_SECONDS` over the last
  day, oldest first, for the page's plots; one page of at most
  :data:`MAX_PAGE` proxies (default :data:`HISTORY_PAGE`) in name order,
  with ``total`` (how many there are), ``offset`` and ``limit``.
* ``/api/proxy/{type}`` and ``/api/clients`` take the same optional
  ``offset`` and ``limit`` (then at most :data:`MAX_PAGE` entries and a
  ``total``); without them they list everything, as frp (the names are
  bounded by ``max_tracked_proxies``, the clients by the login limits).
  A bad ``offset`` or ``limit`` is 400.
* ``/metrics`` with ``enable_prometheus``: frp's metric names from a
  collector reading :mod:`labrelay.server.stats` at scrape time, in a
  registry of its own.
* ``/`` redirects (301) to ``/static/``, the page (``assets_dir`` replaces
  the packaged ``labrelay/server/static``).

With ``dashboard_user`` or ``dashboard_pwd`` set, everything but
``/healthz`` needs HTTP basic auth; a wrong answer gets 401 with
``WWW-Authenticate: Basic realm="Restricted"``.  Credentials go through
the server's password throttle (:mod:`labrelay.throttle`): a wrong
answer waits at least 0.5 s (frp: 200 ms), parallel guesses from one
address wait ever longer, and while an address is in backoff even right
credentials are answered late.
``dashboard_tls_mode`` serves HTTPS with the configured certificate.

Every request, ``/healthz`` included, must name the dashboard in ``Host``:
``localhost``, a loopback literal, ``dashboard_addr``, the address it
arrived on, or a name in ``dashboard_allowed_hosts`` (any port; a public
name in front of it); 421 otherwise, so that a web page cannot read the
dashboard through DNS rebinding.  A request whose ``Origin`` is another
origin gets 403 (:mod:`labrelay.localweb`).

Differences from frp, on purpose:

* ``dashboard_addr`` defaults to **127.0.0.1**, not frp's 0.0.0.0: the
  dashboard shows every client's address and every proxy, so exposing it
  is a choice to write down (``dashboard_addr = 0.0.0.0``).
* prometheus_client writes a counter's samples with a ``_total`` suffix,
  which frp's Go exporter does not; so that queries and Grafana boards
  written for frps work unchanged, ``frp_server_traffic_in`` and
  ``frp_server_traffic_out`` keep frp's sample names and are exposed
  untyped (PromQL's ``rate()`` works on them all the same).
* Requests are not written to the log (the page polls every few seconds);
  refused credentials are, at most once per address every 10 s.
"""

import hmac
import json
import os
import re
import time

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet.defer import succeed
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import File

from .. import FRP_VERSION, VERSION_TEXT
from ..endpoints import server_endpoint_description
from ..listeners import StartupListener
from ..localweb import HostPolicy, request_denial
from ..tls import TLSConfigError, server_tls_options
from ..tracking import ConnectionSet
from .stats import BUCKET_SECONDS, SAMPLE_SECONDS
from ..throttle import PASS

#: The page shipped with the package.
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "static")
#: Delay before answering refused credentials (frp: 200 ms).
AUTH_FAIL_DELAY = 0.2
NOT_FOUND = "no proxy info found"
#: Most entries in one page of a list (an entry of /api/history is ~2 KiB).
MAX_PAGE = 100
#: Entries in a page of /api/history when no limit is asked for.
HISTORY_PAGE = 20

_JSON = b"application/json; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"


def format_time(timestamp) -> str:
    """frp's dashboard time format (``01-02 15:04:05``, local); "" if
    never."""
    if timestamp is None:
        return ""
    return time.strftime("%m-%d %H:%M:%S", time.localtime(timestamp))


def _ports_text(ports) -> str:
    """``allow_ports`` written back as frp shows it (``1000-2000,3000``)."""
    return ",".join(str(low) if low == high else f"{low}-{high}"
                    for low, high in ports.ranges)


def proxy_conf(proxy) -> dict:
    """
    frp v0.51's ``conf`` of a proxy entry: the snake_case JSON of frps's
    proxy config built from the NewProxy, in Go's field order (frp's
    ``*OutConf`` structs; keys frps does not learn from a NewProxy keep
    their zero value, ``PluginParams`` has no JSON tag in frp).
    """
    m = proxy.message
    kind = m.proxy_type or proxy.type
    conf = {
        "name": m.proxy_name, "type": kind,
        "use_encryption": m.use_encryption,
        "use_compression": m.use_compression,
        "group": m.group, "group_key": m.group_key,
        "proxy_protocol_version": "",
        "bandwidth_limit": m.bandwidth_limit,
        "bandwidth_limit_mode": m.bandwidth_limit_mode,
        "metas": m.metas, "local_ip": "", "local_port": 0, "plugin": "",
        "PluginParams": None, "health_check_type": "",
        "health_check_timeout_s": 0, "health_check_max_failed": 0,
        "health_check_interval_s": 0, "health_check_url": "",
    }
    if kind in ("tcp", "udp"):
        # frps writes the port it bound back into the config (remote_port 0)
        conf["remote_port"] = getattr(proxy, "remote_port", 0) or \
            m.remote_port
    elif kind in ("http", "https", "tcpmux"):
        conf["custom_domains"] = m.custom_domains
        conf["subdomain"] = m.subdomain
        if kind == "http":
            conf["locations"] = m.locations
            conf["host_header_rewrite"] = m.host_header_rewrite
        elif kind == "tcpmux":
            conf["multiplexer"] = m.multiplexer
    return conf


class DashboardApi:
    """The JSON documents, from a :class:`RelayServer`'s live state."""

    def __init__(self, server):
        self.server = server
        self.stats = server.stats

    def server_info(self) -> dict:
        config = self.server.config
        self.stats.sample()
        today_in, today_out = self.stats.today_totals()
        info = {
            "version": FRP_VERSION, "bind_port": config.bind_port,
            "vhost_http_port": config.vhost_http_port,
        }
        for key in ("vhost_https_port", "tcpmux_httpconnect_port",
                    "kcp_bind_port", "quic_bind_port"):
            info[key] = getattr(config, key, 0)  # not implemented yet: 0
        info.update({
            "subdomain_host": config.subdomain_host,
            "max_pool_count": config.max_pool_count,
            "max_ports_per_client": config.max_ports_per_client,
            "heart_beat_timeout": config.heartbeat_timeout,
        })
        if config.allow_ports.ranges:
            info["allow_ports_str"] = _ports_text(config.allow_ports)
        if config.tls_only:
            info["tls_only"] = True
        info.update({
            "total_traffic_in": today_in, "total_traffic_out": today_out,
            "cur_conns": self.stats.current_connections(),
            "client_counts": len(self.server.registry.controls),
            "proxy_type_count": self.stats.type_counts(),
            # labrelay's own, after frp's fields: what actually runs
            "labrelay_version": VERSION_TEXT,
        })
        return info

    def _entry(self, stats, with_version: bool) -> dict:
        today_in, today_out = stats.day_traffic(self.stats.today)
        entry = {"name": stats.name,
                 "conf": proxy_conf(stats.proxy) if stats.online else None}
        if with_version and stats.online and stats.client_version:
            entry["client_version"] = stats.client_version
        entry.update({
            "today_traffic_in": today_in, "today_traffic_out": today_out,
            "cur_conns": stats.current_connections,
            "last_start_time": format_time(stats.last_start),
            "last_close_time": format_time(stats.last_close),
            "status": stats.status,
        })
        return entry

    def proxies(self, kind: str, page=None) -> dict:
        """frp's list of the proxies of type *kind*; with *page* (offset,
        limit), that slice and the ``total``."""
        self.stats.sample()
        entries = self.stats.by_type(kind)
        result = {}
        if page is not None:
            result["total"] = len(entries)
            entries = _sliced(entries, page)
        result["proxies"] = [self._entry(s, True) for s in entries]
        return result

    def proxy(self, kind: str, name: str):
        """One proxy's entry, or None."""
        self.stats.sample()
        stats = self.stats.get(name)
        if stats is None or stats.type != kind:
            return None
        return self._entry(stats, False)

    def traffic(self, name: str):
        """Seven days of one proxy's traffic, today first, or None."""
        self.stats.sample()
        stats = self.stats.get(name)
        if stats is None:
            return None
        traffic_in, traffic_out = stats.last_days(self.stats.today)
        return {"name": name, "traffic_in": traffic_in,
                "traffic_out": traffic_out}

    def clients(self, page=None) -> dict:
        now = self.server.clock.seconds()
        controls = sorted((c for c in self.server.registry.controls.values()
                           if not c.closed),
                          key=lambda c: (c.started_at, c.peer))
        result = {}
        if page is not None:
            result["total"] = len(controls)
            controls = _sliced(controls, page)
        result["clients"] = [{
            "address": control.peer, "user": control.user,
            "version": control.version,
            "hostname": control.login.hostname, "os": control.login.os,
            "arch": control.login.arch,
            "uptime_seconds": max(int(now - control.started_at), 0),
            "proxies": sorted(control.proxies),
        } for control in controls]
        return result

    def history(self, page=(0, HISTORY_PAGE)) -> dict:
        """One page (offset, limit) of the proxies' day of buckets."""
        self.stats.sample()
        bucket = self.stats.bucket
        every = self.stats.all()
        proxies = []
        for stats in _sliced(every, page):
            traffic_in, traffic_out = stats.last_day_history(bucket)
            proxies.append({"name": stats.name, "type": stats.type,
                            "traffic_in": traffic_in,
                            "traffic_out": traffic_out})
        return {"bucket_seconds": BUCKET_SECONDS,
                "end": (bucket + 1) * BUCKET_SECONDS, "total": len(every),
                "offset": page[0], "limit": page[1], "proxies": proxies}


def _sliced(entries: list, page) -> list:
    offset, limit = page
    return entries[offset:offset + limit]


class BadPage(ValueError):
    """A malformed ``offset`` or ``limit`` query argument."""


def page_of(args: dict, default_limit=None):
    """(offset, limit) from a request's query *args* (bytes -> [bytes]),
    the limit clamped to :data:`MAX_PAGE`; None when neither is given and
    there is no *default_limit*.  :class:`BadPage` for a value that is
    not a small non-negative decimal integer."""
    values = {}
    for name in (b"offset", b"limit"):
        given = args.get(name)
        if given:
            text = given[-1]
            if not (text.isdigit() and len(text) <= 9):
                raise BadPage(f"{name.decode()} must be a non-negative "
                              f"integer")
            values[name] = int(text)
    if not values and default_limit is None:
        return None
    limit = values.get(b"limit", default_limit or MAX_PAGE)
    return values.get(b"offset", 0), min(limit, MAX_PAGE)


# -- resources ---------------------------------------------------------------

def _json(request, value) -> bytes:
    request.setHeader(b"content-type", _JSON)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _text(request, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", _TEXT)
    return text.encode("utf-8")


class _Leaf(Resource):
    isLeaf = True


class _NotFound(_Leaf):
    def render(self, request):
        return _text(request, 404, "404 page not found\n")


class _Healthz(_Leaf):
    def render_GET(self, request):
        return b""


class _Refused(_Leaf):
    """A foreign Host (421) or Origin (403)."""

    def __init__(self, code: int, text: str):
        super().__init__()
        self._code, self._text = code, text

    def render(self, request):
        return _text(request, self._code, self._text)


class _Redirect(_Leaf):
    def render_GET(self, request):
        request.setResponseCode(301)
        request.setHeader(b"location", b"/static/")
        return b""


class _Unauthorized(_Leaf):
    """401 after *delay* (:data:`AUTH_FAIL_DELAY`, as frp)."""

    def __init__(self, clock, delay: float = AUTH_FAIL_DELAY):
        super().__init__()
        self._clock = clock
        self._delay = delay

    def render(self, request):
        def answer():
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="Restricted"')
            request.setHeader(b"content-type", _TEXT)
            request.write(b"Unauthorized\n")
            request.finish()

        call = self._clock.callLater(self._delay, answer)
        request.notifyFinish().addErrback(
            lambda _: call.cancel() if call.active() else None)
        return NOT_DONE_YET


class _Api(_Leaf):
    """``/api/...``: dispatch on the path segments after ``api``."""

    def __init__(self, api: DashboardApi):
        super().__init__()
        self._api = api

    def render_GET(self, request):
        try:
            parts = [p.decode("utf-8") for p in request.postpath]
        except UnicodeDecodeError:
            return _text(request, 404, "404 page not found\n")
        api = self._api
        if parts == ["serverinfo"]:
            return _json(request, api.server_info())
        try:
            if parts == ["clients"]:
                return _json(request, api.clients(page_of(request.args)))
            if parts == ["history"]:
                return _json(request, api.history(
                    page_of(request.args, HISTORY_PAGE)))
            if len(parts) == 2 and parts[0] == "proxy" and parts[1]:
                return _json(request, api.proxies(parts[1],
                                                  page_of(request.args)))
        except BadPage as e:
            return _text(request, 400, f"{e}\n")
        if len(parts) == 3 and parts[0] == "proxy" and all(parts[1:]):
            entry = api.proxy(parts[1], parts[2])
            if entry is None:
                return _text(request, 404, NOT_FOUND)
            return _json(request, entry)
        if len(parts) == 2 and parts[0] == "traffic" and parts[1]:
            traffic = api.traffic(parts[1])
            if traffic is None:
                return _text(request, 404, NOT_FOUND)
            return _json(request, traffic)
        return _text(request, 404, "404 page not found\n")


class _Metrics(_Leaf):
    def __init__(self, registry):
        super().__init__()
        self._registry = registry

    def render_GET(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class _Static(File):
    """The page's files; no directory listings."""

    def directoryListing(self):
        return _NotFound()


class _Held(_Leaf):
    """A request whose credentials the password throttle holds: rendered
    once *decided* fires, as the route (True) or 401 (False)."""

    def __init__(self, decided, route, clock):
        super().__init__()
        self._decided = decided
        self._route = route
        self._clock = clock

    def render(self, request):
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def answer(ok):
            if gone:
                return
            if ok:
                request.render(getChildForRequest(self._route(), request))
            else:
                request.render(_Unauthorized(self._clock, 0))

        self._decided.addCallback(answer)
        self._decided.addErrback(_log_failure)
        return NOT_DONE_YET


def _log_failure(failure):
    _Root._log.failure("dashboard: answering held credentials", failure)


class _Root(Resource):
    """Credentials first (but for /healthz), then the route."""

    _log = Logger()

    def __init__(self, dashboard):
        super().__init__()
        self._dashboard = dashboard

    def getChildWithDefault(self, name, request):
        dashboard = self._dashboard
        # either scheme: a TLS proxy in front may serve it as https
        denial = request_denial(dashboard.host_policy, request,
                                ("http", "https"), fetch_site=False)
        if denial is not None:
            return _Refused(*denial)
        if name == b"healthz":
            return _Healthz()
        decided = dashboard.check_credentials(request)
        if decided is not True:
            return _Held(decided, lambda: self._route(name, request),
                         dashboard.clock)
        return self._route(name, request)

    def _route(self, name, request):
        dashboard = self._dashboard
        if name == b"" and not request.postpath:
            return _Redirect()
        if name == b"api":
            return _Api(dashboard.api)
        if name == b"static":
            return _Static(dashboard.assets_dir)
        if name == b"metrics" and dashboard.metrics_registry is not None:
            return _Metrics(dashboard.metrics_registry)
        return _NotFound()


class _Site(Site):
    """The dashboard's site: no access log, and open connections kept so
    that stopping the dashboard closes them."""

    noisy = False

    def __init__(self, resource, reactor):
        super().__init__(resource, reactor=reactor)
        self.channels = ConnectionSet()

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channels = self.channels
        lost = channel.connectionLost

        def connection_lost(reason):
            channels.remove(channel)
            return lost(reason)

        channel.connectionLost = connection_lost
        channels.add(channel)
        return channel

    def log(self, request):
        """Requests are not logged (the page polls every few seconds)."""


# -- metrics -----------------------------------------------------------------

class FrpCollector:
    """frps's Prometheus metrics, read from the stats at scrape time."""

    def __init__(self, server):
        self._server = server

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, Metric
        stats = self._server.stats
        stats.sample()
        yield GaugeMetricFamily(
            "frp_server_client_counts", "The current client counts of frps",
            value=len(self._server.registry.controls))
        proxies = GaugeMetricFamily("frp_server_proxy_counts",
                                    "The current proxy counts",
                                    labels=["type"])
        for kind, count in sorted(stats.type_counts().items()):
            proxies.add_metric([kind], count)
        yield proxies
        connections = GaugeMetricFamily("frp_server_connection_counts",
                                        "The current connection counts",
                                        labels=["name", "type"])
        # frp's names for what are counters; see the module docstring.
        traffic_in = Metric("frp_server_traffic_in", "The total in traffic",
                            "unknown")
        traffic_out = Metric("frp_server_traffic_out",
                             "The total out traffic", "unknown")
        for entry in stats.all():
            labels = {"name": entry.name, "type": entry.type}
            connections.add_metric([entry.name, entry.type],
                                   entry.current_connections)
            traffic_in.add_sample("frp_server_traffic_in", labels,
                                  entry.total_in)
            traffic_out.add_sample("frp_server_traffic_out", labels,
                                   entry.total_out)
        yield connections
        yield traffic_in
        yield traffic_out


def metrics_registry(server):
    """A registry of its own (not prometheus_client's global one): frp's
    metrics plus the process_* ones, as frps's Go exporter has."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FrpCollector(server))
    ProcessCollector(registry=registry)
    return registry


# -- the service -------------------------------------------------------------

class DashboardService(service.MultiService):
    """
    The dashboard listener (a start-up listener: a bind failure fails
    start-up, see ``RelayServer.privilegedStartService``), and the sampler
    that books live traffic into the history every
    :data:`~labrelay.server.stats.SAMPLE_SECONDS`.

    :param server: the :class:`~labrelay.server.service.RelayServer`.
    :param listen: an endpoint description overriding dashboard_addr and
        dashboard_port (tests listen on port 0).
    :raises SystemExit: one line, when the TLS files cannot be used.
    """

    def __init__(self, server, listen=None):
        super().__init__()
        config = server.config
        self.clock = server.clock
        self._server = server
        self.api = DashboardApi(server)
        self.assets_dir = config.assets_dir or STATIC_DIR
        self.metrics_registry = metrics_registry(server) \
            if config.enable_prometheus else None
        self.set_credentials(config.dashboard_user, config.dashboard_pwd)
        self.host_policy = HostPolicy(
            config.dashboard_addr, config.dashboard_allowed_hosts,
            default_port=443 if config.dashboard_tls_mode else 80)
        self.site = _Site(_Root(self), server.reactor)
        factory = self.site
        if config.dashboard_tls_mode:
            try:
                options = server_tls_options(config.dashboard_tls_cert_file,
                                             config.dashboard_tls_key_file)
            except TLSConfigError as e:
                # labrelay.tls names the bind port's keys; say which pair
                why = re.sub(r"\btls_(cert|key)_file\b",
                             r"dashboard_tls_\1_file", str(e))
                raise SystemExit(f"labrelay-server: {config.source}: [common] "
                                 f"{why}") from None
            factory = TLSMemoryBIOFactory(options, False, self.site)
        description = listen or server_endpoint_description(
            config.dashboard_addr, config.dashboard_port)
        self._listener = StartupListener(server.reactor, description,
                                         factory, program="labrelay-server")
        self._listener.setServiceParent(self)
        self._stats = server.stats
        sampler = TimerService(SAMPLE_SECONDS, self._sample)
        sampler.clock = server.clock
        sampler.setServiceParent(self)

    _log = Logger()

    def set_credentials(self, user: str, password: str) -> None:
        """Basic-auth credentials for every route but /healthz (both
        empty: no authentication); a server reload calls this."""
        self._credentials = None
        if user or password:
            self._credentials = (user.encode("utf-8"),
                                 password.encode("utf-8"))

    def _sample(self) -> None:
        # An exception would stop the TimerService for good.
        try:
            self._stats.sample()
        except Exception:
            self._log.failure("dashboard: sampling traffic failed")

    def authorized(self, request) -> bool:
        """Whether *request* carries the configured credentials (or none
        are configured)."""
        if self._credentials is None:
            return True
        user, password = self._credentials
        # both compared, always: no early exit on a wrong user name
        same_user = hmac.compare_digest(request.getUser(), user)
        same_password = hmac.compare_digest(request.getPassword(), password)
        return same_user and same_password

    def check_credentials(self, request):
        """True when *request* may be answered now; else a Deferred firing
        with whether it passed, after the server's password throttle
        (:mod:`labrelay.throttle`) held it.  A request without
        credentials is no guess: refused without being counted."""
        if self._credentials is None:
            return True
        if not (request.getUser() or request.getPassword()):
            return succeed(False)
        host = request.getClientAddress().host
        verdicts = []
        decided = self._server.throttle.check(
            "dashboard", host, request.getUser().decode("utf-8", "replace"),
            lambda: self.authorized(request))
        decided.addCallback(verdicts.append)
        if verdicts and verdicts[0].outcome == PASS:
            return True

        def outcome(_):
            verdict = verdicts[0]
            if verdict.outcome == PASS:
                return True
            self._server.log_auth_failure(
                f"dashboard {host}", "refused credentials", verdict)
            return False

        return decided.addCallback(outcome)

    def when_listening(self):
        """A Deferred firing with the dashboard's IListeningPort."""
        return self._listener.when_listening()

    def stopService(self):
        d = super().stopService()
        d.addCallback(lambda _: self.site.channels.close_all())
        return d
