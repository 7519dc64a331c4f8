# -*- test-case-name: tests.unit.test_dashboard,tests.integration.test_dashboard,tests.unit.test_name_churn,tests.integration.test_name_churn -*-
"""
The dashboard's JSON API under ``/api/``: frp's routes (v0.51) and field
names, from the :class:`~labrelay.server.context.ServerContext`'s live state,
plus labrelay's own ``/api/clients`` and ``/api/history``.

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

JSON bodies are compact, ``no-store``; errors are plain text, as frps.
"""

import time

from twisted.web.resource import Resource

from .. import FRP_VERSION, VERSION_TEXT
from ..web import PAGE_NOT_FOUND, JsonFormat, plain_text
from .stats import BUCKET_SECONDS

NOT_FOUND = "no proxy info found"
#: Most entries in one page of a list (an entry of /api/history is ~2 KiB).
MAX_PAGE = 100
#: Entries in a page of /api/history when no limit is asked for.
HISTORY_PAGE = 20

_JSON = JsonFormat()


def format_time(timestamp) -> str:
    """frp's dashboard time format (``01-02 15:04:05``, local); "" if
    never."""
    if timestamp is None:
        return ""
    return time.strftime("%m-%d %H:%M:%S", time.localtime(timestamp))


def _ports_text(ports) -> str:
    """``allow_ports`` written back as frp shows it (``1000-2000,3000``)."""
    return ",".join(
        str(low) if low == high else f"{low}-{high}" for low, high in ports.ranges
    )


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
        "name": m.proxy_name,
        "type": kind,
        "use_encryption": m.use_encryption,
        "use_compression": m.use_compression,
        "group": m.group,
        "group_key": m.group_key,
        "proxy_protocol_version": "",
        "bandwidth_limit": m.bandwidth_limit,
        "bandwidth_limit_mode": m.bandwidth_limit_mode,
        "metas": m.metas,
        "local_ip": "",
        "local_port": 0,
        "plugin": "",
        "PluginParams": None,
        "health_check_type": "",
        "health_check_timeout_s": 0,
        "health_check_max_failed": 0,
        "health_check_interval_s": 0,
        "health_check_url": "",
    }
    if kind in ("tcp", "udp"):
        # frps writes the port it bound back into the config (remote_port 0)
        conf["remote_port"] = getattr(proxy, "remote_port", 0) or m.remote_port
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

    def __init__(self, context):
        self.context = context
        self.stats = context.stats

    def server_info(self) -> dict:
        config = self.context.config
        self.stats.sample()
        today_in, today_out = self.stats.today_totals()
        info = {
            "version": FRP_VERSION,
            "bind_port": config.bind_port,
            "vhost_http_port": config.vhost_http_port,
        }
        for key in (
            "vhost_https_port",
            "tcpmux_httpconnect_port",
            "kcp_bind_port",
            "quic_bind_port",
        ):
            info[key] = getattr(config, key, 0)  # not implemented yet: 0
        info.update(
            {
                "subdomain_host": config.subdomain_host,
                "max_pool_count": config.max_pool_count,
                "max_ports_per_client": config.max_ports_per_client,
                "heart_beat_timeout": config.heartbeat_timeout,
            }
        )
        if config.allow_ports.ranges:
            info["allow_ports_str"] = _ports_text(config.allow_ports)
        if config.tls_only:
            info["tls_only"] = True
        info.update(
            {
                "total_traffic_in": today_in,
                "total_traffic_out": today_out,
                "cur_conns": self.stats.current_connections(),
                "client_counts": len(self.context.registry.controls),
                "proxy_type_count": self.stats.type_counts(),
                # labrelay's own, after frp's fields: what actually runs
                "labrelay_version": VERSION_TEXT,
            }
        )
        return info

    def _entry(self, stats, with_version: bool) -> dict:
        today_in, today_out = stats.day_traffic(self.stats.today)
        entry = {
            "name": stats.name,
            "conf": proxy_conf(stats.proxy) if stats.online else None,
        }
        if with_version and stats.online and stats.client_version:
            entry["client_version"] = stats.client_version
        entry.update(
            {
                "today_traffic_in": today_in,
                "today_traffic_out": today_out,
                "cur_conns": stats.current_connections,
                "last_start_time": format_time(stats.last_start),
                "last_close_time": format_time(stats.last_close),
                "status": stats.status,
            }
        )
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
        return {"name": name, "traffic_in": traffic_in, "traffic_out": traffic_out}

    def clients(self, page=None) -> dict:
        now = self.context.clock.seconds()
        controls = sorted(
            (c for c in self.context.registry.controls.values() if not c.closed),
            key=lambda c: (c.started_at, c.peer),
        )
        result = {}
        if page is not None:
            result["total"] = len(controls)
            controls = _sliced(controls, page)
        result["clients"] = [
            {
                "address": control.peer,
                "user": control.user,
                "version": control.version,
                "hostname": control.login.hostname,
                "os": control.login.os,
                "arch": control.login.arch,
                "uptime_seconds": max(int(now - control.started_at), 0),
                "proxies": sorted(control.proxies),
            }
            for control in controls
        ]
        return result

    def history(self, page=(0, HISTORY_PAGE)) -> dict:
        """One page (offset, limit) of the proxies' day of buckets."""
        self.stats.sample()
        bucket = self.stats.bucket
        every = self.stats.all()
        proxies = []
        for stats in _sliced(every, page):
            traffic_in, traffic_out = stats.last_day_history(bucket)
            proxies.append(
                {
                    "name": stats.name,
                    "type": stats.type,
                    "traffic_in": traffic_in,
                    "traffic_out": traffic_out,
                }
            )
        return {
            "bucket_seconds": BUCKET_SECONDS,
            "end": (bucket + 1) * BUCKET_SECONDS,
            "total": len(every),
            "offset": page[0],
            "limit": page[1],
            "proxies": proxies,
        }


def _sliced(entries: list, page) -> list:
    offset, limit = page
    return entries[offset : offset + limit]


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
                raise BadPage(f"{name.decode()} must be a non-negative integer")
            values[name] = int(text)
    if not values and default_limit is None:
        return None
    limit = values.get(b"limit", default_limit or MAX_PAGE)
    return values.get(b"offset", 0), min(limit, MAX_PAGE)


class ApiResource(Resource):
    """``/api/...``: dispatch on the path segments after ``api``."""

    isLeaf = True

    def __init__(self, api: DashboardApi):
        super().__init__()
        self._api = api

    def render_GET(self, request):
        try:
            parts = [p.decode("utf-8") for p in request.postpath]
        except UnicodeDecodeError:
            return plain_text(request, 404, PAGE_NOT_FOUND)
        api = self._api
        if parts == ["serverinfo"]:
            return _JSON.body(request, api.server_info())
        try:
            if parts == ["clients"]:
                return _JSON.body(request, api.clients(page_of(request.args)))
            if parts == ["history"]:
                return _JSON.body(
                    request, api.history(page_of(request.args, HISTORY_PAGE))
                )
            if len(parts) == 2 and parts[0] == "proxy" and parts[1]:
                return _JSON.body(request, api.proxies(parts[1], page_of(request.args)))
        except BadPage as e:
            return plain_text(request, 400, f"{e}\n")
        if len(parts) == 3 and parts[0] == "proxy" and all(parts[1:]):
            entry = api.proxy(parts[1], parts[2])
            if entry is None:
                return plain_text(request, 404, NOT_FOUND)
            return _JSON.body(request, entry)
        if len(parts) == 2 and parts[0] == "traffic" and parts[1]:
            traffic = api.traffic(parts[1])
            if traffic is None:
                return plain_text(request, 404, NOT_FOUND)
            return _JSON.body(request, traffic)
        return plain_text(request, 404, PAGE_NOT_FOUND)
