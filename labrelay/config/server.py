# -*- test-case-name: tests.unit.test_config -*-
"""
frps.ini: the server's settings (:class:`ServerConfig`) and their parser.

This module owns the server model (one field per implemented ``[common]``
key, declared with :func:`~labrelay.config.schema.setting`), the tables
generated from it (:data:`SERVER_KEYS`, :data:`SERVER_OWN_KEYS`: abuse
limits frp does not have; :data:`SERVER_RELOADABLE`, which
:mod:`labrelay.server.reload` applies), and the server's validation.
:func:`parse_server_config` is pure; :func:`load_server_config` only adds
reading the file.

Unlike frp, an unparseable boolean or integer is refused, never ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Optional

import attrs

from .errors import Warnings, fail
from .ini import IniDocument, PortSet
from .schema import (
    SERVER_NOT_YET,
    SERVER_NOT_YET_PREFIXES,
    key_table,
    reloadable_keys,
    setting,
)
from .v1text import config_format
from .values import (
    CommonKeys,
    check_common,
    common_section,
    document,
    read_common,
    read_file,
    warn_outside_sections,
)


@attrs.frozen
class ServerConfig:
    """frps.ini ``[common]``: one attribute per implemented key."""

    bind_addr: str = setting("0.0.0.0")
    bind_port: int = setting(7000, "port1")
    proxy_bind_addr: str = setting("0.0.0.0")
    vhost_http_port: int = setting(0, "port")
    vhost_http_timeout: int = setting(60)
    vhost_https_port: int = setting(0, "port")
    tcpmux_httpconnect_port: int = setting(0, "port")
    tcpmux_passthrough: bool = setting(False)
    subdomain_host: str = setting("")
    custom_404_page: str = setting("")
    token: str = setting("", reloadable=True)
    authentication_method: str = setting("token")
    authenticate_heartbeats: bool = setting(False, reloadable=True)
    authenticate_new_work_conns: bool = setting(False, reloadable=True)
    heartbeat_timeout: int = setting(-1, reloadable=True)
    user_conn_timeout: int = setting(10, reloadable=True)
    allow_ports: PortSet = setting(PortSet(), reloadable=True)
    max_pool_count: int = setting(5, reloadable=True)
    max_ports_per_client: int = setting(0, reloadable=True)
    udp_packet_size: int = setting(1500)
    tls_only: bool = setting(False)
    tls_cert_file: str = setting("")
    tls_key_file: str = setting("")
    tls_trusted_ca_file: str = setting("")
    tcp_mux: bool = setting(True)
    tcp_mux_keepalive_interval: int = setting(30)
    tcp_keepalive: int = setting(7200)
    detailed_errors_to_client: bool = setting(True, reloadable=True)
    log_file: str = setting("console")
    log_level: str = setting("info", reloadable=True)
    log_way: str = setting("console")
    disable_log_color: bool = setting(False)
    log_max_days: int = setting(3)
    # The dashboard (labrelay.server.dashboard); unlike frp (0.0.0.0) it
    # listens on the loopback interface unless told otherwise.
    dashboard_addr: str = setting("127.0.0.1")
    dashboard_port: int = setting(0, "port")
    dashboard_user: str = setting("", reloadable=True)
    dashboard_pwd: str = setting("", reloadable=True)
    dashboard_tls_mode: bool = setting(False)
    dashboard_tls_cert_file: str = setting("")
    dashboard_tls_key_file: str = setting("")
    enable_prometheus: bool = setting(False)
    assets_dir: str = setting("")
    #: host names the dashboard answers besides its own address and
    #: localhost (labrelay's own key, in SERVER_OWN_KEYS)
    dashboard_allowed_hosts: tuple[str, ...] = setting((), own=True)
    # labrelay's own keys (SERVER_OWN_KEYS); 0 turns each off.
    #: seconds a Login/Ping/NewWorkConn timestamp may differ from the
    #: server's clock (0: no check, as frp)
    auth_timestamp_skew: int = setting(0, own=True, reloadable=True)
    #: connections not yet past Login/NewWorkConn, per source address
    max_unauthenticated_per_source: int = setting(32, own=True, reloadable=True)
    #: the same in total
    max_unauthenticated_connections: int = setting(1024, own=True, reloadable=True)
    #: proxies one client (control connection) may register
    max_proxies_per_client: int = setting(256, own=True, reloadable=True)
    #: seconds a connection or yamux session may take to log in or join a
    #: pool, from its accept (at least 1)
    unauthenticated_timeout: int = setting(10, own=True, reloadable=True)
    #: seconds an authenticated yamux session may carry no control or work
    #: connection before it is closed
    session_idle_timeout: int = setting(90, own=True, reloadable=True)
    #: yamux sessions without a control serving one client's pool
    max_sessions_per_client: int = setting(8, own=True, reloadable=True)
    #: custom_domains + subdomain of one http proxy
    max_domains_per_proxy: int = setting(100, own=True, reloadable=True)
    #: locations of one http proxy
    max_locations_per_proxy: int = setting(100, own=True, reloadable=True)
    #: routes (domains x locations) of one http proxy
    max_routes_per_proxy: int = setting(1000, own=True, reloadable=True)
    #: vhost routes of all proxies together
    max_routes_total: int = setting(100000, own=True, reloadable=True)
    #: Logins on one TCP connection (a yamux session); frpc sends one
    max_logins_per_connection: int = setting(1, own=True, reloadable=True)
    #: clients logged in at once with the same ``user`` ("" included)
    max_clients_per_user: int = setting(256, own=True, reloadable=True)
    #: clients logged in at once from one source address
    max_clients_per_source: int = setting(128, own=True, reloadable=True)
    #: proxies of all clients together
    max_proxies_total: int = setting(10000, own=True, reloadable=True)
    #: proxy names the traffic statistics and port memory keep
    max_tracked_proxies: int = setting(4096, own=True, reloadable=True)
    #: password attempts of one source (IPv4 address, IPv6 /64) held in
    #: backoff at once; more are refused unchecked (labrelay.throttle)
    auth_pending_per_source: int = setting(32, own=True, reloadable=True)
    #: failed password checks a second, all sources together, beyond which
    #: sources without a recent success are held the longest delay
    auth_failures_per_second: int = setting(50, own=True, reloadable=True)
    #: without tcp_mux, a work connection must come from its control's
    #: address (with tcp_mux it must be a stream of the control's session)
    work_conn_same_source: bool = setting(True, own=True, reloadable=True)
    #: bytes all yamux streams together may make the server hold before
    #: their windows shrink towards 128 KiB each (labrelay.mux.budget)
    max_buffered_bytes: int = setting(16 * 1024 * 1024, own=True, reloadable=True)
    source: str = "frps.ini"
    warnings: tuple[str, ...] = ()

    @property
    def format(self) -> str:
        """The format the settings were read from: ``ini``, ``toml``,
        ``yaml`` or ``json`` (chosen by :attr:`source`'s extension)."""
        return config_format(self.source)


#: frps.ini [common] keys labrelay implements -> value kind.
SERVER_KEYS = key_table(ServerConfig)
#: frps.ini [common] keys of labrelay's own (frp has none of them).
SERVER_OWN_KEYS = key_table(ServerConfig, own=True)
#: frps.ini [common] keys a reload applies without a restart.
SERVER_RELOADABLE = reloadable_keys(ServerConfig)


def parse_server_config(
    text: str,
    source: str = "frps.ini",
    environ: Optional[Mapping[str, str]] = None,
    *,
    strict: bool = True,
) -> ServerConfig:
    """
    Parse frps config text into a :class:`ServerConfig`, in the format
    *source*'s extension says (:func:`~.v1text.config_format`).

    :param strict: in frp's v1 formats, a key frp does not know is an error
        (a warning when false), as frp's ``--strict_config``; INI files are
        not affected.
    """
    fmt = config_format(source)
    if fmt != "ini":
        from .v1read import parse_server_v1

        return parse_server_v1(text, source, environ, fmt=fmt, strict=strict)
    warnings = Warnings()
    with warnings.kept_on_error():
        return _parse_server(text, source, environ, warnings)


def _common_keys() -> CommonKeys:
    """What frps.ini [common] may hold."""
    # client.py imports this module (for the frps keys it names in its
    # warnings), so the frpc keys are looked up at parse time.
    from .client import CLIENT_KEYS, CLIENT_OWN_KEYS

    return CommonKeys(
        keys={**SERVER_KEYS, **SERVER_OWN_KEYS},
        not_yet=SERVER_NOT_YET,
        not_yet_prefixes=SERVER_NOT_YET_PREFIXES,
        other_keys={**CLIENT_KEYS, **CLIENT_OWN_KEYS},
        other="frpc",
    )


def _parse_server(text, source, environ, warnings) -> ServerConfig:
    doc = IniDocument()
    document(text, source, environ, doc)
    common = common_section(doc, source)
    warn_outside_sections(doc, warnings)
    values, _ = read_common(common, _common_keys(), warnings)
    for name, section in doc.sections.items():
        if name.startswith("plugin."):
            warnings.add(
                section.source,
                name,
                None,
                "server plugins are not supported by labrelay yet; section ignored",
            )
    return server_from_values(values, source, warnings)


def read_server_common(section, warnings: Warnings) -> dict:
    """Typed values of a ``[common]`` section of frps keys."""
    values, _ = read_common(section, _common_keys(), warnings)
    return values


def server_from_values(values: dict, source: str, warnings: Warnings) -> ServerConfig:
    """Check the typed values of frps [common] (as INI keys), fill in
    frp's dependent defaults and make the :class:`ServerConfig`."""
    check_common(values, source)
    _check_dashboard(values, source, warnings)
    for key, kind in SERVER_OWN_KEYS.items():
        if kind == "int" and values.get(key, 0) < 0:
            raise fail(
                source,
                "common",
                key,
                f"must not be negative (0 turns it off), not {values[key]}",
            )
    _check_token_strength(values, source, warnings)
    if values.get("unauthenticated_timeout", 1) < 1:
        raise fail(
            source,
            "common",
            "unauthenticated_timeout",
            f"must be at least 1 (seconds), not {values['unauthenticated_timeout']}",
        )
    tcp_mux = values.get("tcp_mux", True)
    values.setdefault("heartbeat_timeout", -1 if tcp_mux else 90)
    values.setdefault("proxy_bind_addr", values.get("bind_addr", "0.0.0.0"))
    if values.get("tls_trusted_ca_file"):
        values["tls_only"] = True
    return ServerConfig(**values, source=source, warnings=tuple(warnings.items))


#: Shortest token that is not warned about on a public bind address.
MIN_TOKEN_LENGTH = 16


def is_loopback(address: str) -> bool:
    """Whether *address* (an IP literal, ``localhost``, or empty for all
    interfaces) reaches this host only."""
    address = address.strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _check_token_strength(values: dict, source: str, warnings: Warnings) -> None:
    """Warn when a relay reachable from other hosts has an empty or short
    token: anyone who can reach bind_port could then register proxies."""
    if is_loopback(values.get("bind_addr", "0.0.0.0")):
        return
    token = values.get("token", "")
    if not token:
        warnings.add(
            source,
            "common",
            "token",
            "empty: any client that "
            "reaches bind_port can log in; set a random token "
            "(openssl rand -hex 16)",
        )
    elif len(token) < MIN_TOKEN_LENGTH:
        warnings.add(
            source,
            "common",
            "token",
            f"only {len(token)} "
            f"characters on a public bind_addr; use at least "
            f"{MIN_TOKEN_LENGTH} random ones (openssl rand -hex 16)",
        )


def _check_dashboard(values: dict, source: str, warnings: Warnings) -> None:
    """dashboard_tls_mode needs its files; keys that need the dashboard
    warn without it."""
    if values.get("dashboard_tls_mode"):
        for key in ("dashboard_tls_cert_file", "dashboard_tls_key_file"):
            if not values.get(key):
                raise fail(
                    source, "common", key, "required when dashboard_tls_mode is true"
                )
    else:
        for key in ("dashboard_tls_cert_file", "dashboard_tls_key_file"):
            if values.get(key):
                warnings.add(
                    source,
                    "common",
                    key,
                    "has no effect when dashboard_tls_mode is false",
                )
    for name in values.get("dashboard_allowed_hosts", ()):
        if any(ch in name for ch in "/:@ ") and not name.startswith("["):
            raise fail(
                source,
                "common",
                "dashboard_allowed_hosts",
                f"{name!r} is not a host name (no scheme, no port)",
            )
    if not values.get("dashboard_port"):
        for key in (
            "enable_prometheus",
            "dashboard_user",
            "dashboard_pwd",
            "dashboard_tls_mode",
            "assets_dir",
            "dashboard_allowed_hosts",
        ):
            if values.get(key):
                warnings.add(
                    source, "common", key, "has no effect without dashboard_port"
                )


def load_server_config(
    path, environ: Optional[Mapping[str, str]] = None, *, strict: bool = True
) -> ServerConfig:
    """Read and parse an frps config file (frps.ini, frps.toml, ...)."""
    source, text = read_file(path)
    return parse_server_config(text, source, environ, strict=strict)
