# -*- test-case-name: tests.unit.test_server_reload,tests.integration.test_server_reload -*-
"""
Live reload of the server's settings (SIGHUP, ``systemctl reload``).

The config file is read and validated again; a file that does not parse
changes nothing.  Otherwise the keys in :data:`RELOADABLE` take their new
values at once: ``server.config`` is replaced by a copy of the running
config (``attrs.evolve``) with only those keys taken from the file, and the
parts that keep their own copy (the source guard, the replay cache, the
dashboard's credentials, the log level filter) are told
(:meth:`RelayServer.apply_config`).  Every other changed key is logged as
needing a restart, by name (values are never logged: they may be secrets).

What "at once" means per key:

* ``allow_ports``, ``max_ports_per_client``, ``max_proxies_per_client``,
  ``detailed_errors_to_client``: the next NewProxy (live proxies stay);
* ``max_unauthenticated_*``, ``unauthenticated_timeout``: the next
  accepted connection;
* ``session_idle_timeout``: the next time a session becomes idle;
* ``max_sessions_per_client``: the next session that joins a pool;
* ``max_domains_per_proxy``, ``max_locations_per_proxy``,
  ``max_routes_*``, ``max_proxies_total``: the next NewProxy;
  ``max_logins_per_connection``, ``max_clients_per_*``: the next Login;
  ``max_tracked_proxies``: the next proxy start or close (live clients and
  proxies stay);
* ``auth_timestamp_skew``, ``auth_pending_per_source``,
  ``auth_failures_per_second``: the next authentication;
* ``work_conn_same_source``: the next work connection;
* ``max_buffered_bytes``: the next window grant of each yamux stream;
* ``token``, ``authenticate_heartbeats``, ``authenticate_new_work_conns``,
  ``max_pool_count``, ``user_conn_timeout``, ``heartbeat_timeout``: the
  next login.  A client already logged in keeps the values of its login
  (its token still keys its encryption and signs its work connections and
  Pings), so its tunnels carry on;
* ``dashboard_user``/``dashboard_pwd``: the next dashboard request;
* ``log_level``: the next log event (when the log destination is the
  config's ``log_file``, not one chosen on twistd's command line).

Listeners and routes exist once started, so their keys (``bind_*``,
``vhost_*``, ``subdomain_host``, ``dashboard_port``, TLS, ``tcp_mux``, ...)
need a restart.

:func:`config_changes` and :func:`merged_config` are pure;
:class:`~labrelay.sighup.SighupHandler` (re-exported here) turns SIGHUP
into a reload in the reactor.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from ..config import SERVER_RELOADABLE, ServerConfig, load_server_config
from ..sighup import SighupHandler

_log = Logger()

#: [common] keys a reload applies without a restart (the fields declared
#: reloadable in ServerConfig).
RELOADABLE = SERVER_RELOADABLE

#: ServerConfig fields that are not [common] keys.
_NOT_KEYS = frozenset({"source", "warnings"})


@attrs.frozen
class ReloadResult:
    """The keys whose new values apply now, and those waiting for a
    restart (each in ServerConfig field order)."""

    applied: tuple[str, ...] = ()
    restart_keys: tuple[str, ...] = ()


def config_changes(old: ServerConfig, new: ServerConfig) -> ReloadResult:
    """Which [common] keys differ, split into reloadable and not."""
    applied, restart = [], []
    for field in attrs.fields(ServerConfig):
        name = field.name
        if name in _NOT_KEYS:
            continue
        if getattr(old, name) != getattr(new, name):
            (applied if name in RELOADABLE else restart).append(name)
    return ReloadResult(tuple(applied), tuple(restart))


def merged_config(old: ServerConfig, new: ServerConfig) -> ServerConfig:
    """*old* with the reloadable keys of *new* (and its warnings)."""
    return attrs.evolve(
        old, warnings=new.warnings, **{name: getattr(new, name) for name in RELOADABLE}
    )


def apply(server, new: ServerConfig) -> ReloadResult:
    """
    Apply the reloadable keys of *new* to *server* (a
    :class:`~labrelay.server.service.RelayServer`); log what changed.
    """
    result = config_changes(server.config, new)
    server.apply_config(merged_config(server.config, new))
    for warning in new.warnings:
        # not 'warning=': Twisted's legacy observers (trial's, twistd's) take
        # an event with a 'warning' key for a Python warning
        _log.warn("{config_warning}", config_warning=warning)
    if result.restart_keys:
        _log.warn(
            "reload: {keys} changed, which needs a restart (the "
            "running value is kept until then)",
            keys=", ".join(result.restart_keys),
        )
    _log.info(
        "reload: applied {applied}",
        applied=", ".join(result.applied) if result.applied else "no change",
    )
    return result


def reload_from_file(server, path, environ=None) -> ReloadResult:
    """
    Read *path* again and :func:`apply` it to *server*.  Raises
    :class:`labrelay.config.ConfigError` (nothing changed) for a bad file.
    """
    strict = getattr(server, "strict_config", True)
    return apply(server, load_server_config(path, environ, strict=strict))


__all__ = [
    "RELOADABLE",
    "ReloadResult",
    "SighupHandler",
    "apply",
    "config_changes",
    "merged_config",
    "reload_from_file",
]
