# -*- test-case-name: tests.unit.test_dashboard,tests.integration.test_dashboard,tests.integration.test_metrics,tests.system.test_dashboard_browser -*-
"""
The server dashboard on ``dashboard_addr:dashboard_port``: frp's HTTP API,
a web page and Prometheus metrics; this module is its listener, its
credentials and its routes.

Routes (all ``GET``):

* ``/healthz``: 200, empty; never asks for credentials.
* ``/api/...``: frp's JSON API (v0.51 routes and field names) and
  labrelay's own ``/api/clients`` and ``/api/history``
  (:mod:`labrelay.server.dashboard_api`).
* ``/metrics`` with ``enable_prometheus``: frp's metric names
  (:mod:`labrelay.server.dashboard_metrics`).
* ``/`` redirects (301) to ``/static/``, the page (``assets_dir`` replaces
  the packaged ``labrelay/server/static``).

With ``dashboard_user`` or ``dashboard_pwd`` set, everything but
``/healthz`` needs HTTP basic auth; a wrong answer gets 401 with
``WWW-Authenticate: Basic realm="Restricted"``.  Credentials go through
the server's password throttle (:mod:`labrelay.throttle`, by way of
:class:`labrelay.web.BasicAuth`): a wrong answer waits at least 0.5 s
(frp: 200 ms), parallel guesses from one address wait ever longer, and
while an address is in backoff even right credentials are answered late.
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
* ``frp_server_traffic_in``/``_out`` keep frp's sample names
  (:mod:`labrelay.server.dashboard_metrics` says why).
* Requests are not written to the log (the page polls every few seconds);
  refused credentials are, at most once per address every 10 s.
"""

import os
import re

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.static import File

from ..endpoints import server_endpoint_description
from ..listeners import StartupListener
from ..localweb import HostPolicy, request_denial
from ..tls import TLSConfigError, server_tls_options
from ..web import (
    PAGE_NOT_FOUND,
    BasicAuth,
    Credentials,
    QuietSite,
    TrackingFactory,
    answer_when_decided,
    plain_text,
)
from .dashboard_api import ApiResource, DashboardApi
from .dashboard_metrics import MetricsResource, metrics_registry
from .stats import SAMPLE_SECONDS

#: The page shipped with the package.
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class _Leaf(Resource):
    isLeaf = True


class _NotFound(_Leaf):
    def render(self, request):
        return plain_text(request, 404, PAGE_NOT_FOUND)


class _Healthz(_Leaf):
    def render_GET(self, request):
        return b""


class _Refused(_Leaf):
    """A foreign Host (421) or Origin (403)."""

    def __init__(self, code: int, text: str):
        super().__init__()
        self._code, self._text = code, text

    def render(self, request):
        return plain_text(request, self._code, self._text)


class _Redirect(_Leaf):
    def render_GET(self, request):
        request.setResponseCode(301)
        request.setHeader(b"location", b"/static/")
        return b""


class _Static(File):
    """The page's files; no directory listings."""

    def directoryListing(self):
        return _NotFound()


class _Held(_Leaf):
    """A request whose credentials are being decided (the password
    throttle holds them): rendered as the route or as 401, once
    *decided* fires."""

    def __init__(self, decided, route):
        super().__init__()
        self._decided = decided
        self._route = route

    def render(self, request):
        return answer_when_decided(
            request,
            self._decided,
            lambda: request.render(getChildForRequest(self._route(), request)),
            _Root._log,
            "dashboard: answering held credentials",
        )


class _Root(Resource):
    """Host and Origin first, then credentials (but for /healthz), then
    the route."""

    _log = Logger()

    def __init__(self, dashboard):
        super().__init__()
        self._dashboard = dashboard

    def getChildWithDefault(self, name, request):
        dashboard = self._dashboard
        # either scheme: a TLS proxy in front may serve it as https
        denial = request_denial(
            dashboard.host_policy, request, ("http", "https"), fetch_site=False
        )
        if denial is not None:
            return _Refused(*denial)
        if name == b"healthz":
            return _Healthz()
        decided = dashboard.auth.check(request)
        if decided is not True:
            return _Held(decided, lambda: self._route(name, request))
        return self._route(name, request)

    def _route(self, name, request):
        dashboard = self._dashboard
        if name == b"" and not request.postpath:
            return _Redirect()
        if name == b"api":
            return ApiResource(dashboard.api)
        if name == b"static":
            return _Static(dashboard.assets_dir)
        if name == b"metrics" and dashboard.metrics_registry is not None:
            return MetricsResource(dashboard.metrics_registry)
        return _NotFound()


class DashboardService(service.MultiService):
    """
    The dashboard listener (a start-up listener: a bind failure fails
    start-up, see ``RelayServer.privilegedStartService``), and the sampler
    that books live traffic into the history every
    :data:`~labrelay.server.stats.SAMPLE_SECONDS`.

    :param context: the server's
        :class:`~labrelay.server.context.ServerContext`.
    :param listen: an endpoint description overriding dashboard_addr and
        dashboard_port (tests listen on port 0).
    :raises SystemExit: one line, when the TLS files cannot be used.
    """

    def __init__(self, context, listen=None):
        super().__init__()
        config = context.config
        self.clock = context.clock
        self._context = context
        self.api = DashboardApi(context)
        self.assets_dir = config.assets_dir or STATIC_DIR
        self.metrics_registry = (
            metrics_registry(context) if config.enable_prometheus else None
        )
        self.set_credentials(config.dashboard_user, config.dashboard_pwd)
        # a request without credentials gets its 401 at once
        self.auth = BasicAuth(
            context.clock,
            context.throttle,
            "dashboard",
            lambda: self._credentials,
            self._refused,
            missing_delay=0,
        )
        self.host_policy = HostPolicy(
            config.dashboard_addr,
            config.dashboard_allowed_hosts,
            default_port=443 if config.dashboard_tls_mode else 80,
        )
        self.site = QuietSite(_Root(self), reactor=context.reactor)
        #: the open connections, closed when the dashboard stops
        self.tracking = TrackingFactory(self.site, "dashboard")
        factory = self.tracking
        if config.dashboard_tls_mode:
            try:
                options = server_tls_options(
                    config.dashboard_tls_cert_file, config.dashboard_tls_key_file
                )
            except TLSConfigError as e:
                # labrelay.tls names the bind port's keys; say which pair
                why = re.sub(
                    r"\btls_(cert|key)_file\b", r"dashboard_tls_\1_file", str(e)
                )
                raise SystemExit(
                    f"labrelay-server: {config.source}: [common] {why}"
                ) from None
            factory = TLSMemoryBIOFactory(options, False, factory)
        description = listen or server_endpoint_description(
            config.dashboard_addr, config.dashboard_port
        )
        self._listener = StartupListener(
            context.reactor, description, factory, program="labrelay-server"
        )
        self._listener.setServiceParent(self)
        self._stats = context.stats
        sampler = TimerService(SAMPLE_SECONDS, self._sample)
        sampler.clock = context.clock
        sampler.setServiceParent(self)

    _log = Logger()

    def set_credentials(self, user: str, password: str) -> None:
        """Basic-auth credentials for every route but /healthz (both
        empty: no authentication); a server reload calls this."""
        self._credentials = Credentials.from_config(user, password)

    def _refused(self, request, verdict) -> None:
        if verdict is not None:  # None: no credentials, no guess
            host = getattr(request.getClientAddress(), "host", "")
            self._context.log_auth_failure(
                f"dashboard {host}", "refused credentials", verdict
            )

    def _sample(self) -> None:
        # An exception would stop the TimerService for good.
        try:
            self._stats.sample()
        except Exception:
            self._log.failure("dashboard: sampling traffic failed")

    def when_listening(self):
        """A Deferred firing with the dashboard's IListeningPort."""
        return self._listener.when_listening()

    def stopService(self):
        d = super().stopService()
        d.addCallback(lambda _: self.tracking.connections.close_all())
        return d
