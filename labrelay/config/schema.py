# -*- test-case-name: tests.unit.test_config_schema -*-
"""
The config schema: what each key is, in one place per key.

A key labrelay implements is a field of its model (``ServerConfig``,
``ClientConfig``, ``ProxyConfig``) declared with :func:`setting`, whose
metadata says its value kind, whether it is labrelay's own (frp has no such
key), whether a reload applies it, and, for proxies, which proxy types read
it.  The tables the parsers and the reloads use (``SERVER_KEYS``,
``RELOADABLE``, ...) are generated from that metadata by :func:`key_table`
and :func:`reloadable_keys`, so adding a key is adding one field.

The frp keys labrelay does not implement have no model field; they stay
tables here, with their kinds and frp's defaults, next to the obsolete keys
and the proxy types and protocols that are not supported yet.  Value kinds:
``str``, ``bool``, ``int``, ``port`` (0-65535), ``port1`` (1-65535),
``list`` (comma list), ``ports`` (port ranges).
"""

from __future__ import annotations

from typing import Optional

import attrs

from .ini import PortSet

KINDS = ("str", "bool", "int", "port", "port1", "list", "ports")

#: metadata names on attrs fields
_KIND, _OWN, _RELOADABLE, _PROXY_TYPES = (
    "labrelay.kind",
    "labrelay.own",
    "labrelay.reloadable",
    "labrelay.proxy_types",
)


def _kind_of(default) -> str:
    """The value kind a default implies (ports must be said explicitly)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, str):
        return "str"
    if isinstance(default, tuple):
        return "list"
    if isinstance(default, PortSet):
        return "ports"
    raise TypeError(f"no value kind for a default of {default!r}")


def setting(
    default,
    kind: Optional[str] = None,
    *,
    own: bool = False,
    reloadable: bool = False,
    proxy_types: Optional[tuple[str, ...]] = None,
):
    """
    An attrs field that is a config key of the model's section.

    :param default: frp's default (or labrelay's, for its own keys).
    :param kind: the value kind; by default the one *default* implies
        (``str``, ``bool``, ``int``, ``list``, ``ports``).
    :param own: labrelay's own key, which frp does not have.
    :param reloadable: a reload applies the new value without a restart.
    :param proxy_types: the proxy types that read the key (proxy fields
        only; None: every type).
    """
    kind = kind or _kind_of(default)
    if kind not in KINDS:
        raise ValueError(f"unknown value kind {kind!r}")
    return attrs.field(
        default=default,
        metadata={
            _KIND: kind,
            _OWN: own,
            _RELOADABLE: reloadable,
            _PROXY_TYPES: proxy_types,
        },
    )


def _settings(model) -> list:
    return [f for f in attrs.fields(model) if _KIND in f.metadata]


def key_table(
    model, *, own: bool = False, proxy_type: Optional[str] = None
) -> dict[str, str]:
    """
    Key -> value kind of *model*'s keys, in field order: frp's keys, or
    labrelay's own with *own*.  With *proxy_type*, only the keys read by
    that type alone (``""``: the keys every type reads).
    """
    table = {}
    for field in _settings(model):
        if field.metadata[_OWN] != own:
            continue
        if proxy_type is not None:
            types = field.metadata[_PROXY_TYPES]
            if (types is None) != (proxy_type == "") or (
                types is not None and proxy_type not in types
            ):
                continue
        table[field.name] = field.metadata[_KIND]
    return table


def reloadable_keys(model) -> frozenset[str]:
    """The keys of *model* that a reload applies without a restart."""
    return frozenset(f.name for f in _settings(model) if f.metadata[_RELOADABLE])


# -- keys without a model field -----------------------------------------------

#: frps.ini [common] keys of frp that labrelay does not implement yet.
SERVER_NOT_YET = {
    "kcp_bind_port": "int",
    "quic_bind_port": "int",
    "quic_keepalive_period": "int",
    "quic_max_idle_timeout": "int",
    "quic_max_incoming_streams": "int",
    "oidc_issuer": "str",
    "oidc_audience": "str",
    "oidc_skip_expiry_check": "bool",
    "oidc_skip_issuer_check": "bool",
    "pprof_enable": "bool",
    "nat_hole_analysis_data_reserve_hours": "int",
}
SERVER_NOT_YET_PREFIXES: tuple[str, ...] = ()

#: frpc.ini [common] keys of frp that labrelay does not implement yet.
CLIENT_NOT_YET = {
    "oidc_client_id": "str",
    "oidc_client_secret": "str",
    "oidc_audience": "str",
    "oidc_scope": "str",
    "oidc_token_endpoint_url": "str",
    "http_proxy": "str",
    "dns_server": "str",
    "nat_hole_stun_server": "str",
    "quic_keepalive_period": "int",
    "quic_max_idle_timeout": "int",
    "quic_max_incoming_streams": "int",
    "assets_dir": "str",
    "pprof_enable": "bool",
}
CLIENT_NOT_YET_PREFIXES = ("oidc_additional_",)

#: Proxy keys of frp that labrelay does not implement yet (plus plugin_*).
PROXY_NOT_YET = {
    "bandwidth_limit": "str",
    "bandwidth_limit_mode": "str",
    "group": "str",
    "group_key": "str",
    "proxy_protocol_version": "str",
    "health_check_type": "str",
    "health_check_timeout_s": "int",
    "health_check_max_failed": "int",
    "health_check_interval_s": "int",
    "health_check_url": "str",
    "plugin": "str",
}
PROXY_NOT_YET_PREFIXES = ("plugin_",)

#: frp's default of each not-yet-implemented key whose default is not its
#: zero value (false, 0, empty): a key written at its default (or zero)
#: changes nothing, so it gets no warning.
NOT_YET_DEFAULTS = {
    "quic_keepalive_period": 10,
    "quic_max_idle_timeout": 30,
    "quic_max_incoming_streams": 100000,
    "nat_hole_analysis_data_reserve_hours": 168,
    "nat_hole_stun_server": "stun.easyvoip.com:3478",
    "bandwidth_limit_mode": "client",
    "health_check_timeout_s": 3,
    "health_check_max_failed": 1,
    "health_check_interval_s": 10,
}

#: Obsolete [common] keys (either side): the warning to give.
OLD_KEYS = {
    "privilege_token": "obsolete frp key; use token instead; ignored",
    "privilege_allow_ports": "obsolete frp key; use allow_ports instead; ignored",
    "dashboard_passwd": "misspelt frp key; use dashboard_pwd instead; ignored",
    "bind_udp_port": "obsolete frp key (removed in frp v0.48); ignored",
    "authentication_timeout": "obsolete frp key (removed in frp v0.25); ignored",
    "privilege_mode": "obsolete frp key (privilege mode is always on); ignored",
}

#: frp keys of other proxy types and of visitors (besides the tcp and http
#: keys): ignored where they do not apply, as frp ignores them.
OTHER_TYPE_PROXY_KEYS = frozenset(
    {
        "sk",
        "allow_users",
        "server_name",
        "server_user",
        "bind_addr",
        "bind_port",
        "protocol",
        "keep_tunnel_open",
        "max_retries_an_hour",
        "min_retry_interval",
        "fallback_to",
        "fallback_timeout_ms",
    }
)

SUPPORTED_PROXY_TYPES = ("tcp", "http", "udp", "stcp", "https", "tcpmux")
NOT_YET_PROXY_TYPES = ("sudp", "xtcp")
NOT_YET_PROTOCOLS = ("kcp", "quic", "websocket", "wss")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
#: Most proxies one range: section may generate.
MAX_RANGE_PORTS = 65536
