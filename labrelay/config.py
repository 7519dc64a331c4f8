# -*- test-case-name: tests.test_config -*-
"""
labrelay's configuration: frp legacy INI files (frps.ini, frpc.ini) turned
into frozen attrs values, with frp's defaults.

This module owns the meaning of every key: the tables saying which frp keys
labrelay implements, which it recognises but does not implement yet (one
warning each), which are obsolete, and labrelay's own server keys
(``SERVER_OWN_KEYS``: abuse limits frp does not have); the value models
(:class:`ServerConfig`, :class:`ProxyConfig`, :class:`ClientConfig`, and
:class:`PortSet`, which is defined in config_ini); and the validation.  It is pure: ``parse_*`` take text and return values, ``load_*``
only add reading the file.  Text-level syntax (templates, the INI dialect, Go
scalars) lives in :mod:`labrelay.config_ini`.

Unlike frp, an unparseable boolean or integer is refused, never ignored.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import ipaddress
import os
from typing import Mapping, Optional

import attrs

from labrelay.config_ini import (
    DEFAULT_SECTION, Entry, IniDocument, IniError, PortSet, Section,
    parse_go_bool, parse_go_int, parse_port_ranges, render_template,
    split_list)

__all__ = [
    "ConfigError", "PortSet", "parse_port_ranges", "ServerConfig",
    "ProxyConfig", "ClientConfig", "parse_server_config",
    "parse_client_config", "load_server_config", "load_client_config"]

Pairs = tuple[tuple[str, str], ...]

# -- key tables --------------------------------------------------------------
# Value kinds: str, bool, int, port (0-65535), port1 (1-65535), list, ports.

#: frps.ini [common] keys labrelay implements.
SERVER_KEYS = {
    "bind_addr": "str", "bind_port": "port1", "proxy_bind_addr": "str",
    "vhost_http_port": "port", "vhost_http_timeout": "int",
    "subdomain_host": "str", "custom_404_page": "str", "token": "str",
    "authentication_method": "str", "authenticate_heartbeats": "bool",
    "authenticate_new_work_conns": "bool", "heartbeat_timeout": "int",
    "user_conn_timeout": "int", "allow_ports": "ports",
    "max_pool_count": "int", "max_ports_per_client": "int",
    "tls_only": "bool", "tls_cert_file": "str", "tls_key_file": "str",
    "tls_trusted_ca_file": "str", "tcp_mux": "bool",
    "tcp_mux_keepalive_interval": "int", "tcp_keepalive": "int",
    "detailed_errors_to_client": "bool", "log_file": "str",
    "log_level": "str", "log_way": "str", "disable_log_color": "bool",
    "log_max_days": "int",
    "dashboard_addr": "str", "dashboard_port": "port",
    "dashboard_user": "str", "dashboard_pwd": "str",
    "dashboard_tls_mode": "bool", "dashboard_tls_cert_file": "str",
    "dashboard_tls_key_file": "str", "enable_prometheus": "bool",
    "assets_dir": "str",
}
#: frps.ini [common] keys of labrelay's own (frp has none of them).
SERVER_OWN_KEYS = {
    "auth_timestamp_skew": "int", "max_unauthenticated_per_source": "int",
    "max_unauthenticated_connections": "int", "max_proxies_per_client": "int",
    "unauthenticated_timeout": "int", "session_idle_timeout": "int",
    "max_sessions_per_client": "int",
    "dashboard_allowed_hosts": "list",  # not a limit: the dashboard's Host
    "max_domains_per_proxy": "int", "max_locations_per_proxy": "int",
    "max_routes_per_proxy": "int", "max_routes_total": "int",
    "max_logins_per_connection": "int", "max_clients_per_user": "int",
    "max_clients_per_source": "int", "max_proxies_total": "int",
    "max_tracked_proxies": "int",
    "auth_pending_per_source": "int", "auth_failures_per_second": "int",
    "work_conn_same_source": "bool",
    "max_buffered_bytes": "int",
}
#: frps.ini [common] keys of frp that labrelay does not implement yet.
SERVER_NOT_YET = {
    "kcp_bind_port": "int", "quic_bind_port": "int",
    "quic_keepalive_period": "int", "quic_max_idle_timeout": "int",
    "quic_max_incoming_streams": "int", "vhost_https_port": "int",
    "tcpmux_httpconnect_port": "int", "tcpmux_passthrough": "bool",
    "oidc_issuer": "str", "oidc_audience": "str",
    "oidc_skip_expiry_check": "bool", "oidc_skip_issuer_check": "bool",
    "udp_packet_size": "int", "pprof_enable": "bool",
    "nat_hole_analysis_data_reserve_hours": "int",
}
SERVER_NOT_YET_PREFIXES: tuple[str, ...] = ()

#: frpc.ini [common] keys labrelay implements (plus the meta_* prefix).
CLIENT_KEYS = {
    "server_addr": "str", "server_port": "port1", "protocol": "str",
    "user": "str", "token": "str", "authentication_method": "str",
    "authenticate_heartbeats": "bool", "authenticate_new_work_conns": "bool",
    "pool_count": "int", "tcp_mux": "bool",
    "tcp_mux_keepalive_interval": "int", "heartbeat_interval": "int",
    "heartbeat_timeout": "int", "login_fail_exit": "bool",
    "dial_server_timeout": "int", "dial_server_keepalive": "int",
    "connect_server_local_ip": "str", "tls_enable": "bool",
    "tls_cert_file": "str", "tls_key_file": "str",
    "tls_trusted_ca_file": "str", "tls_server_name": "str",
    "disable_custom_tls_first_byte": "bool", "start": "list",
    "includes": "list", "log_file": "str", "log_level": "str",
    "log_way": "str", "disable_log_color": "bool", "log_max_days": "int",
    "admin_addr": "str", "admin_port": "port", "admin_user": "str",
    "admin_pwd": "str",
}
#: frpc.ini [common] keys of labrelay's own (frp has none of them).
CLIENT_OWN_KEYS = {"max_buffered_bytes": "int"}
#: frpc.ini [common] keys of frp that labrelay does not implement yet.
CLIENT_NOT_YET = {
    "oidc_client_id": "str", "oidc_client_secret": "str",
    "oidc_audience": "str", "oidc_scope": "str",
    "oidc_token_endpoint_url": "str", "http_proxy": "str",
    "dns_server": "str", "nat_hole_stun_server": "str",
    "quic_keepalive_period": "int", "quic_max_idle_timeout": "int",
    "quic_max_incoming_streams": "int", "udp_packet_size": "int",
    "assets_dir": "str", "pprof_enable": "bool",
}
CLIENT_NOT_YET_PREFIXES = ("oidc_additional_",)

#: frp's default of each not-yet-implemented key whose default is not its
#: zero value (false, 0, empty): a key written at its default (or zero)
#: changes nothing, so it gets no warning.
NOT_YET_DEFAULTS = {
    "quic_keepalive_period": 10, "quic_max_idle_timeout": 30,
    "quic_max_incoming_streams": 100000, "udp_packet_size": 1500,
    "nat_hole_analysis_data_reserve_hours": 168,
    "nat_hole_stun_server": "stun.easyvoip.com:3478",
    "bandwidth_limit_mode": "client", "health_check_timeout_s": 3,
    "health_check_max_failed": 1, "health_check_interval_s": 10,
}

#: Obsolete [common] keys (either side): the warning to give.
OLD_KEYS = {
    "privilege_token": "obsolete frp key; use token instead; ignored",
    "privilege_allow_ports":
        "obsolete frp key; use allow_ports instead; ignored",
    "dashboard_passwd": "misspelt frp key; use dashboard_pwd instead; "
                        "ignored",
    "bind_udp_port": "obsolete frp key (removed in frp v0.48); ignored",
    "authentication_timeout": "obsolete frp key (removed in frp v0.25); "
                              "ignored",
    "privilege_mode": "obsolete frp key (privilege mode is always on); "
                      "ignored",
}

#: Proxy keys labrelay implements, for every type (plus meta_*).
PROXY_KEYS = {"type": "str", "local_ip": "str", "local_port": "port",
              "use_encryption": "bool", "use_compression": "bool",
              "role": "str"}
TCP_PROXY_KEYS = {"remote_port": "port"}
#: http proxy keys labrelay implements (plus header_*).
HTTP_PROXY_KEYS = {
    "custom_domains": "list", "subdomain": "str", "locations": "list",
    "http_user": "str", "http_pwd": "str", "host_header_rewrite": "str",
    "route_by_http_user": "str",
}
#: Proxy keys of frp that labrelay does not implement yet (plus plugin_*).
PROXY_NOT_YET = {
    "bandwidth_limit": "str", "bandwidth_limit_mode": "str", "group": "str",
    "group_key": "str", "proxy_protocol_version": "str",
    "health_check_type": "str", "health_check_timeout_s": "int",
    "health_check_max_failed": "int", "health_check_interval_s": "int",
    "health_check_url": "str", "plugin": "str",
}
PROXY_NOT_YET_PREFIXES = ("plugin_",)
#: frp keys of other proxy types and of visitors: ignored where they do not
#: apply, as frp ignores them.
OTHER_PROXY_KEYS = frozenset({
    "multiplexer", "sk", "allow_users", "server_name", "server_user",
    "bind_addr", "bind_port", "protocol", "keep_tunnel_open",
    "max_retries_an_hour", "min_retry_interval", "fallback_to",
    "fallback_timeout_ms"} | set(TCP_PROXY_KEYS) | set(HTTP_PROXY_KEYS))

SUPPORTED_PROXY_TYPES = ("tcp", "http")
NOT_YET_PROXY_TYPES = ("udp", "https", "stcp", "sudp", "xtcp", "tcpmux")
NOT_YET_PROTOCOLS = ("kcp", "quic", "websocket", "wss")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
#: Most proxies one range: section may generate.
MAX_RANGE_PORTS = 65536


class ConfigError(Exception):
    """
    A config labrelay refuses; str() is one line naming file/section/key.

    :ivar warnings: the warnings found before the error, to show first.
    """

    warnings: tuple[str, ...] = ()


# -- models ------------------------------------------------------------------

@attrs.frozen
class ServerConfig:
    """frps.ini ``[common]``: one attribute per implemented key."""
    bind_addr: str = "0.0.0.0"
    bind_port: int = 7000
    proxy_bind_addr: str = "0.0.0.0"
    vhost_http_port: int = 0
    vhost_http_timeout: int = 60
    subdomain_host: str = ""
    custom_404_page: str = ""
    token: str = ""
    authentication_method: str = "token"
    authenticate_heartbeats: bool = False
    authenticate_new_work_conns: bool = False
    heartbeat_timeout: int = -1
    user_conn_timeout: int = 10
    allow_ports: PortSet = PortSet()
    max_pool_count: int = 5
    max_ports_per_client: int = 0
    tls_only: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_trusted_ca_file: str = ""
    tcp_mux: bool = True
    tcp_mux_keepalive_interval: int = 30
    tcp_keepalive: int = 7200
    detailed_errors_to_client: bool = True
    log_file: str = "console"
    log_level: str = "info"
    log_way: str = "console"
    disable_log_color: bool = False
    log_max_days: int = 3
    # The dashboard (labrelay.server.dashboard); unlike frp (0.0.0.0) it
    # listens on the loopback interface unless told otherwise.
    dashboard_addr: str = "127.0.0.1"
    dashboard_port: int = 0
    dashboard_user: str = ""
    dashboard_pwd: str = ""
    dashboard_tls_mode: bool = False
    dashboard_tls_cert_file: str = ""
    dashboard_tls_key_file: str = ""
    enable_prometheus: bool = False
    assets_dir: str = ""
    #: host names the dashboard answers besides its own address and
    #: localhost (labrelay's own key, in SERVER_OWN_KEYS)
    dashboard_allowed_hosts: tuple[str, ...] = ()
    # labrelay's own keys (SERVER_OWN_KEYS); 0 turns each off.
    #: seconds a Login/Ping/NewWorkConn timestamp may differ from the
    #: server's clock (0: no check, as frp)
    auth_timestamp_skew: int = 0
    #: connections not yet past Login/NewWorkConn, per source address
    max_unauthenticated_per_source: int = 32
    #: the same in total
    max_unauthenticated_connections: int = 1024
    #: proxies one client (control connection) may register
    max_proxies_per_client: int = 256
    #: seconds a connection or yamux session may take to log in or join a
    #: pool, from its accept (at least 1)
    unauthenticated_timeout: int = 10
    #: seconds an authenticated yamux session may carry no control or work
    #: connection before it is closed
    session_idle_timeout: int = 90
    #: yamux sessions without a control serving one client's pool
    max_sessions_per_client: int = 8
    #: custom_domains + subdomain of one http proxy
    max_domains_per_proxy: int = 100
    #: locations of one http proxy
    max_locations_per_proxy: int = 100
    #: routes (domains x locations) of one http proxy
    max_routes_per_proxy: int = 1000
    #: vhost routes of all proxies together
    max_routes_total: int = 100000
    #: Logins on one TCP connection (a yamux session); frpc sends one
    max_logins_per_connection: int = 1
    #: clients logged in at once with the same ``user`` ("" included)
    max_clients_per_user: int = 256
    #: clients logged in at once from one source address
    max_clients_per_source: int = 128
    #: proxies of all clients together
    max_proxies_total: int = 10000
    #: proxy names the traffic statistics and port memory keep
    max_tracked_proxies: int = 4096
    #: password attempts of one source (IPv4 address, IPv6 /64) held in
    #: backoff at once; more are refused unchecked (labrelay.throttle)
    auth_pending_per_source: int = 32
    #: failed password checks a second, all sources together, beyond which
    #: sources without a recent success are held the longest delay
    auth_failures_per_second: int = 50
    #: without tcp_mux, a work connection must come from its control's
    #: address (with tcp_mux it must be a stream of the control's session)
    work_conn_same_source: bool = True
    #: bytes all yamux streams together may make the server hold before
    #: their windows shrink towards 128 KiB each (labrelay.mux.budget)
    max_buffered_bytes: int = 16 * 1024 * 1024
    source: str = "frps.ini"
    warnings: tuple[str, ...] = ()


@attrs.frozen
class ProxyConfig:
    """One tcp or http proxy of frpc.ini."""
    name: str
    section: str = attrs.field(
        default=attrs.Factory(lambda self: self.name, takes_self=True))
    type: str = "tcp"
    local_ip: str = "127.0.0.1"
    local_port: int = 0
    remote_port: int = 0
    use_encryption: bool = False
    use_compression: bool = False
    custom_domains: tuple[str, ...] = ()
    subdomain: str = ""
    locations: tuple[str, ...] = ()
    http_user: str = ""
    http_pwd: str = ""
    host_header_rewrite: str = ""
    route_by_http_user: str = ""
    headers: Pairs = ()
    metas: Pairs = ()


@attrs.frozen
class ClientConfig:
    """frpc.ini: ``[common]`` (one attribute per implemented key) + proxies."""
    server_addr: str = "0.0.0.0"
    server_port: int = 7000
    protocol: str = "tcp"
    user: str = ""
    token: str = ""
    authentication_method: str = "token"
    authenticate_heartbeats: bool = False
    authenticate_new_work_conns: bool = False
    metas: Pairs = ()
    pool_count: int = 1
    tcp_mux: bool = True
    tcp_mux_keepalive_interval: int = 30
    heartbeat_interval: int = 30
    heartbeat_timeout: int = -1
    login_fail_exit: bool = True
    dial_server_timeout: int = 10
    dial_server_keepalive: int = 7200
    connect_server_local_ip: str = ""
    tls_enable: bool = True
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_trusted_ca_file: str = ""
    tls_server_name: str = ""
    disable_custom_tls_first_byte: bool = True
    start: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    log_file: str = "console"
    log_level: str = "info"
    log_way: str = "console"
    disable_log_color: bool = False
    log_max_days: int = 3
    admin_addr: str = "127.0.0.1"
    admin_port: int = 0  # 0: no admin API
    admin_user: str = ""
    admin_pwd: str = ""
    #: labrelay's own (CLIENT_OWN_KEYS): as the server's max_buffered_bytes
    max_buffered_bytes: int = 16 * 1024 * 1024
    proxies: tuple[ProxyConfig, ...] = ()
    source: str = "frpc.ini"
    warnings: tuple[str, ...] = ()


# -- helpers -----------------------------------------------------------------

def _fail(source: str, section: Optional[str], key: Optional[str],
          what: str) -> ConfigError:
    where = "" if section is None else f"[{section}] "
    where += "" if key is None else f"{key}: "
    return ConfigError(f"{source}: {where}{what}")


class _Warnings:
    """Collects one-line warnings, each once, in order."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, source: str, section: str, key: Optional[str],
            what: str) -> None:
        text = f"{source} [{section}] {key}: {what}" if key is not None \
            else f"{source} [{section}]: {what}"
        if text not in self.items:
            self.items.append(text)

    @contextlib.contextmanager
    def kept_on_error(self):
        """A :class:`ConfigError` raised inside carries the warnings so
        far, so they are shown before it."""
        try:
            yield
        except ConfigError as e:
            e.warnings = tuple(self.items)
            raise


def _at_default(key: str, value) -> bool:
    """Whether a not-yet-implemented key's typed *value* is its zero value
    or frp's default (then it changes nothing and needs no warning)."""
    return not value or value == NOT_YET_DEFAULTS.get(key)


def _did_you_mean(key: str, known) -> str:
    """`` (did you mean 'server_port'?)`` for a near miss, else ""."""
    close = difflib.get_close_matches(key.lower(), list(known), n=1,
                                      cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(entry: Entry, section: str, key: str, kind: str):
    """Turn one written value into its typed value, or raise ConfigError."""
    value = entry.value
    try:
        if kind == "bool":
            return parse_go_bool(value)
        if kind == "list":
            return split_list(value)
        if kind == "ports":
            return parse_port_ranges(value)
        if kind == "str":
            return value
        number = parse_go_int(value)
    except ValueError as e:
        raise _fail(entry.source, section, key, str(e)) from None
    lowest = 1 if kind == "port1" else 0
    if kind in ("port", "port1") and not lowest <= number <= 65535:
        raise _fail(entry.source, section, key,
                    f"port {number} is out of range {lowest}-65535")
    return number


def _read_common(section: Section, side: str, warnings: _Warnings):
    """Typed values of the keys set in [common], and the meta_* pairs."""
    keys, not_yet, prefixes, other_keys, other = (
        ({**SERVER_KEYS, **SERVER_OWN_KEYS}, SERVER_NOT_YET,
         SERVER_NOT_YET_PREFIXES, {**CLIENT_KEYS, **CLIENT_OWN_KEYS}, "frpc")
        if side == "server"
        else ({**CLIENT_KEYS, **CLIENT_OWN_KEYS}, CLIENT_NOT_YET,
              CLIENT_NOT_YET_PREFIXES,
              {**SERVER_KEYS, **SERVER_OWN_KEYS}, "frps"))
    values: dict = {}
    metas: list[tuple[str, str]] = []
    first_error = None
    for key, entry in section.entries.items():
        # Every key is looked at before a bad value is reported, so the
        # warnings about the others are not lost.
        try:
            _read_common_key(key, entry, side, keys, not_yet, prefixes,
                             other_keys, other, values, metas, warnings)
        except ConfigError as e:
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return values, tuple(metas)


def _read_common_key(key, entry, side, keys, not_yet, prefixes, other_keys,
                     other, values, metas, warnings) -> None:
    if key in keys:
        if entry.value != "":
            values[key] = _convert(entry, "common", key, keys[key])
    elif side == "client" and key.startswith("meta_"):
        metas.append((key[len("meta_"):], entry.value))
    elif key in OLD_KEYS:
        warnings.add(entry.source, "common", key, OLD_KEYS[key])
    elif key in not_yet or key.startswith(prefixes):
        value = _convert(entry, "common", key, not_yet.get(key, "str")) \
            if entry.value != "" else None
        if not _at_default(key, value):
            warnings.add(entry.source, "common", key,
                         "not supported by labrelay yet; ignored")
    elif key in other_keys:
        warnings.add(entry.source, "common", key,
                     f"a {other} key, not used here; ignored")
    else:
        warnings.add(entry.source, "common", key, "unknown key; ignored"
                     + _did_you_mean(key, keys))


def _check_common(values: dict, source: str) -> None:
    """Checks shared by frps and frpc [common]."""
    method = values.get("authentication_method", "token")
    if method == "oidc":
        raise _fail(source, "common", "authentication_method",
                    "oidc is not supported by labrelay yet; use token")
    if method != "token":
        raise _fail(source, "common", "authentication_method",
                    f"invalid value {method!r}; frp accepts token or oidc")
    level = values.get("log_level", "info")
    if level not in LOG_LEVELS:
        raise _fail(source, "common", "log_level",
                    f"invalid value {level!r}; use one of "
                    f"{', '.join(LOG_LEVELS)}")
    for have, need in (("tls_cert_file", "tls_key_file"),
                       ("tls_key_file", "tls_cert_file")):
        if values.get(have) and not values.get(need):
            raise _fail(source, "common", need, f"required when {have} is set")
    values["log_way"] = "console" \
        if values.get("log_file", "console") == "console" else "file"


def _warn_outside_sections(doc: IniDocument, warnings: _Warnings) -> None:
    section = doc.sections.get(DEFAULT_SECTION)
    for key, entry in (section.entries.items() if section else ()):
        warnings.add(entry.source, DEFAULT_SECTION, key,
                     "written before any section; ignored")


def _document(text: str, source: str, environ, doc: IniDocument
              ) -> list[str]:
    """Render and parse ``text`` into ``doc``; return its section headers."""
    environ = os.environ if environ is None else environ
    try:
        return doc.feed(render_template(text, environ), source)
    except IniError as e:
        raise ConfigError(f"{source}: {e}") from None


def _common_section(doc: IniDocument, source: str) -> Section:
    if "common" not in doc.sections:
        raise _fail(source, "common", None,
                    "section is missing; frp requires a [common] section")
    return doc.sections["common"]


def _read_file(path) -> tuple[str, str]:
    """(path as str, text) of a config file, or ConfigError."""
    path = os.fsdecode(os.fspath(getattr(path, "path", path)))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return path, data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None


# -- frps --------------------------------------------------------------------

def parse_server_config(text: str, source: str = "frps.ini",
                        environ: Optional[Mapping[str, str]] = None
                        ) -> ServerConfig:
    """Parse frps.ini text into a :class:`ServerConfig`."""
    warnings = _Warnings()
    with warnings.kept_on_error():
        return _parse_server(text, source, environ, warnings)


def _parse_server(text, source, environ, warnings) -> ServerConfig:
    doc = IniDocument()
    _document(text, source, environ, doc)
    common = _common_section(doc, source)
    _warn_outside_sections(doc, warnings)
    values, _ = _read_common(common, "server", warnings)
    for name, section in doc.sections.items():
        if name.startswith("plugin."):
            warnings.add(section.source, name, None, "server plugins are not "
                         "supported by labrelay yet; section ignored")
    _check_common(values, source)
    _check_dashboard(values, source, warnings)
    for key, kind in SERVER_OWN_KEYS.items():
        if kind == "int" and values.get(key, 0) < 0:
            raise _fail(source, "common", key,
                        f"must not be negative (0 turns it off), not "
                        f"{values[key]}")
    _check_token_strength(values, source, warnings)
    if values.get("unauthenticated_timeout", 1) < 1:
        raise _fail(source, "common", "unauthenticated_timeout",
                    f"must be at least 1 (seconds), not "
                    f"{values['unauthenticated_timeout']}")
    tcp_mux = values.get("tcp_mux", True)
    values.setdefault("heartbeat_timeout", -1 if tcp_mux else 90)
    values.setdefault("proxy_bind_addr", values.get("bind_addr", "0.0.0.0"))
    if values.get("tls_trusted_ca_file"):
        values["tls_only"] = True
    return ServerConfig(**values, source=source,
                        warnings=tuple(warnings.items))


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


def _check_token_strength(values: dict, source: str,
                          warnings: _Warnings) -> None:
    """Warn when a relay reachable from other hosts has an empty or short
    token: anyone who can reach bind_port could then register proxies."""
    if is_loopback(values.get("bind_addr", "0.0.0.0")):
        return
    token = values.get("token", "")
    if not token:
        warnings.add(source, "common", "token", "empty: any client that "
                     "reaches bind_port can log in; set a random token "
                     "(openssl rand -hex 16)")
    elif len(token) < MIN_TOKEN_LENGTH:
        warnings.add(source, "common", "token", f"only {len(token)} "
                     f"characters on a public bind_addr; use at least "
                     f"{MIN_TOKEN_LENGTH} random ones (openssl rand -hex 16)")


def _check_dashboard(values: dict, source: str, warnings: _Warnings) -> None:
    """dashboard_tls_mode needs its files; keys that need the dashboard
    warn without it."""
    if values.get("dashboard_tls_mode"):
        for key in ("dashboard_tls_cert_file", "dashboard_tls_key_file"):
            if not values.get(key):
                raise _fail(source, "common", key,
                            "required when dashboard_tls_mode is true")
    else:
        for key in ("dashboard_tls_cert_file", "dashboard_tls_key_file"):
            if values.get(key):
                warnings.add(source, "common", key, "has no effect when "
                             "dashboard_tls_mode is false")
    for name in values.get("dashboard_allowed_hosts", ()):
        if any(ch in name for ch in "/:@ ") and not name.startswith("["):
            raise _fail(source, "common", "dashboard_allowed_hosts",
                        f"{name!r} is not a host name (no scheme, no port)")
    if not values.get("dashboard_port"):
        for key in ("enable_prometheus", "dashboard_user", "dashboard_pwd",
                    "dashboard_tls_mode", "assets_dir",
                    "dashboard_allowed_hosts"):
            if values.get(key):
                warnings.add(source, "common", key,
                             "has no effect without dashboard_port")


def load_server_config(path, environ: Optional[Mapping[str, str]] = None
                       ) -> ServerConfig:
    """Read and parse an frps.ini file."""
    source, text = _read_file(path)
    return parse_server_config(text, source, environ)


# -- frpc --------------------------------------------------------------------

def parse_client_config(text: str, source: str = "frpc.ini",
                        environ: Optional[Mapping[str, str]] = None,
                        base_dir: Optional[str] = None) -> ClientConfig:
    """
    Parse frpc.ini text into a :class:`ClientConfig`.  Relative ``includes``
    are resolved against ``base_dir`` (default: the directory of ``source``).
    """
    warnings = _Warnings()
    with warnings.kept_on_error():
        return _parse_client(text, source, environ, base_dir, warnings)


def _parse_client(text, source, environ, base_dir, warnings) -> ClientConfig:
    doc = IniDocument()
    _document(text, source, environ, doc)
    common = _common_section(doc, source)
    values, metas = _read_common(common, "client", warnings)
    _check_common(values, source)
    for key in CLIENT_OWN_KEYS:
        if values.get(key, 0) < 0:
            raise _fail(source, "common", key,
                        f"must not be negative (0 turns it off), not "
                        f"{values[key]}")
    _check_client(values, source, warnings)
    if base_dir is None:
        base_dir = os.path.dirname(source) or os.curdir
    for pattern in values.get("includes", ()):
        _include(doc, pattern, base_dir, source, environ, warnings)
    _warn_outside_sections(doc, warnings)
    proxies = _read_proxies(doc, values, source, warnings)
    return ClientConfig(**values, metas=metas, proxies=proxies, source=source,
                        warnings=tuple(warnings.items))


def load_client_config(path, environ: Optional[Mapping[str, str]] = None
                       ) -> ClientConfig:
    """Read and parse an frpc.ini file (and the files it includes)."""
    source, text = _read_file(path)
    return parse_client_config(text, source, environ,
                               os.path.dirname(source) or os.curdir)


def _check_client(values: dict, source: str, warnings: _Warnings) -> None:
    """Validate frpc [common] and resolve frp's "unset" defaults."""
    protocol = values.get("protocol", "tcp")
    if protocol in NOT_YET_PROTOCOLS:
        raise _fail(source, "common", "protocol", f"protocol {protocol} is "
                    f"not supported by labrelay yet; use tcp")
    if protocol != "tcp":
        raise _fail(source, "common", "protocol",
                    f"invalid protocol {protocol!r}; frp accepts tcp, kcp, "
                    f"quic, websocket, wss")
    if values.get("pool_count", 1) < 0:
        raise _fail(source, "common", "pool_count", "must not be negative")
    tcp_mux = values.get("tcp_mux", True)
    values.setdefault("heartbeat_timeout", -1 if tcp_mux else 90)
    interval = values.setdefault("heartbeat_interval", 30)
    timeout = values["heartbeat_timeout"]
    if interval > 0 and 0 < timeout < interval:
        raise _fail(source, "common", "heartbeat_timeout", f"{timeout} is "
                    f"less than heartbeat_interval {interval}")
    if not values.get("tls_enable", True):
        for key in ("tls_cert_file", "tls_key_file", "tls_trusted_ca_file",
                    "tls_server_name"):
            if values.get(key):
                warnings.add(source, "common", key,
                             "has no effect when tls_enable is false")


def _include(doc: IniDocument, pattern: str, base_dir: str, source: str,
             environ, warnings: _Warnings) -> None:
    """Append the files matching one ``includes`` entry to ``doc``."""
    path = pattern if os.path.isabs(pattern) else \
        os.path.join(base_dir, pattern)
    directory, glob = os.path.split(path)
    directory = os.path.abspath(directory or os.curdir)
    if not os.path.isdir(directory):
        raise _fail(source, "common", "includes",
                    f"directory {directory!r} of {pattern!r} does not exist")
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise _fail(source, "common", "includes",
                    f"cannot list {directory!r}: {e.strerror or e}") from None
    matched = [os.path.join(directory, name) for name in names
               if fnmatch.fnmatchcase(name, glob)
               and os.path.isfile(os.path.join(directory, name))]
    if not matched:
        warnings.add(source, "common", "includes",
                     f"{pattern!r} matches no file")
    for file in matched:
        file, text = _read_file(file)
        if "common" in _document(text, file, environ, doc):
            warnings.add(file, "common", None,
                         "[common] of an included file is ignored")


# -- proxies -----------------------------------------------------------------

def _read_proxies(doc: IniDocument, common: dict, source: str,
                  warnings: _Warnings) -> tuple[ProxyConfig, ...]:
    """Every started tcp/http proxy in file order (ranges expanded in place)."""
    start = common.get("start", ())
    user = common.get("user", "")
    proxies = []
    loaded = set()
    generated = set()
    for name, section in list(doc.sections.items()):
        if name in (DEFAULT_SECTION, "common"):
            continue
        if name.startswith("range:"):
            views = _expand_range(doc, section, generated)
        else:
            views = [(name, section.entries)]
        for proxy_name, entries in views:
            if start and proxy_name not in start:
                continue
            loaded.add(proxy_name)
            proxy = _proxy(doc, proxy_name, name, section.source, entries,
                           user, warnings)
            if proxy is not None:
                proxies.append(proxy)
    for name in start:
        if name not in loaded:
            warnings.add(source, "common", "start",
                         f"no section named {name!r}")
    return tuple(proxies)


def _expand_range(doc: IniDocument, section: Section, generated: set):
    """The (name, entries) of the proxies a ``range:`` section stands for."""
    ports = []
    for key in ("local_port", "remote_port"):
        entry = doc.lookup(section.name, key)
        if entry is None or entry.value == "":
            raise _fail(section.source, section.name, key,
                        "a range: section needs local_port and remote_port")
        written = _convert(entry, section.name, key, "ports")
        if sum(high - low + 1 for low, high in written.ranges) > \
                MAX_RANGE_PORTS:
            raise _fail(entry.source, section.name, key, "too many ports")
        ports.append((entry, written.in_order()))
    (local, local_ports), (remote, remote_ports) = ports
    if len(local_ports) != len(remote_ports):
        raise _fail(remote.source, section.name, "remote_port",
                    f"lists {len(remote_ports)} ports but local_port lists "
                    f"{len(local_ports)}; the counts must match")
    prefix = section.name[len("range:"):].strip()
    views = []
    for index, (local_port, remote_port) in enumerate(
            zip(local_ports, remote_ports)):
        name = f"{prefix}_{index}"
        if name in doc.sections or name in generated:
            raise _fail(section.source, section.name, None,
                        f"generated proxy name {name!r} is already used")
        generated.add(name)
        entries = dict(section.entries)
        entries["local_port"] = attrs.evolve(local, value=str(local_port))
        entries["remote_port"] = attrs.evolve(remote, value=str(remote_port))
        views.append((name, entries))
    return views


def _proxy(doc: IniDocument, name: str, label: str, origin: str,
           entries: dict, user: str, warnings: _Warnings
           ) -> Optional[ProxyConfig]:
    """
    One proxy from its section's own ``entries`` (keys missing there come
    from dotted parent sections, as in go-ini); None if it is skipped.
    ``label`` names the section as written (the range: section, if any).
    """
    def get(key: str, kind: str = "str", default=None):
        entry = entries.get(key) or doc.lookup(name, key)
        if entry is None or entry.value == "":
            return default
        return _convert(entry, label, key, kind)

    role = get("role", default="server")
    if role == "visitor":
        warnings.add(origin, label, None, "visitor sections are not "
                     "supported by labrelay yet; section skipped")
        return None
    if role != "server":
        raise _fail(origin, label, "role",
                    f"must be 'server' or 'visitor', not {role!r}")
    ptype = get("type", default="tcp")
    plugin = get("plugin")
    if ptype in NOT_YET_PROXY_TYPES or plugin:
        what = f"proxy type {ptype}" if ptype in NOT_YET_PROXY_TYPES else \
            f"plugin {plugin}"
        warnings.add(origin, label, None, f"{what} is not supported by "
                     f"labrelay yet; section skipped")
        return None
    if ptype not in SUPPORTED_PROXY_TYPES:
        raise _fail(origin, label, "type", f"unknown proxy type {ptype!r}")
    http = ptype == "http"
    keys = {**PROXY_KEYS, **(HTTP_PROXY_KEYS if http else TCP_PROXY_KEYS)}
    prefixes = ("meta_", "header_") if http else ("meta_",)
    pairs: dict[str, list] = {prefix: [] for prefix in prefixes}
    for key, entry in entries.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            pairs[prefix].append((key[len(prefix):], entry.value))
        elif key in keys:
            continue
        elif key in PROXY_NOT_YET or key.startswith(PROXY_NOT_YET_PREFIXES):
            value = _convert(entry, label, key,
                             PROXY_NOT_YET.get(key, "str")) \
                if entry.value != "" else None
            if not _at_default(key, value):
                warnings.add(entry.source, label, key,
                             "not supported by labrelay yet; ignored")
        elif key == "name":
            warnings.add(entry.source, label, key,
                         "ignored; the section name is the proxy name")
        elif key in OTHER_PROXY_KEYS or key.startswith("header_"):
            warnings.add(entry.source, label, key,
                         f"not used by {ptype} proxies; ignored")
        else:
            warnings.add(entry.source, label, key, "unknown key; ignored"
                         + _did_you_mean(key, {**keys, **PROXY_NOT_YET}))
    local_port = get("local_port", "port", 0)
    if local_port <= 0:
        raise _fail(origin, label, "local_port",
                    "required: the local port to forward to (1-65535)")
    fields = dict(
        name=f"{user}.{name}" if user else name, section=name, type=ptype,
        local_ip=get("local_ip", default="127.0.0.1"), local_port=local_port,
        use_encryption=get("use_encryption", "bool", False),
        use_compression=get("use_compression", "bool", False),
        metas=tuple(pairs["meta_"]))
    if not http:
        return ProxyConfig(remote_port=get("remote_port", "port", 0),
                           **fields)
    for key, kind in HTTP_PROXY_KEYS.items():
        value = get(key, kind)
        if value is not None:
            fields[key] = value
    subdomain = fields.get("subdomain", "")
    if not fields.get("custom_domains") and not subdomain:
        raise _fail(origin, label, "custom_domains",
                    "an http proxy needs custom_domains or subdomain")
    if "." in subdomain or "*" in subdomain:
        raise _fail(origin, label, "subdomain",
                    f"{subdomain!r} must not contain '.' or '*'")
    return ProxyConfig(headers=tuple(pairs["header_"]), **fields)
