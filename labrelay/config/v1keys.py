# -*- test-case-name: tests.unit.test_config_v1 -*-
"""
Which key of frp's v1 config (frps.toml, frpc.toml and their YAML and JSON
forms, frp >= 0.52) is which key of labrelay's models: the one table both
the v1 reader (:mod:`.v1read`) and the INI converter (:mod:`.convert`) use.

Each :class:`V1Key` names a v1 key by its dotted path as frp writes it
(``webServer.port``), the INI key it stands for (``dashboard_port``: a
model field, a key of the not-yet tables of :mod:`.schema`, or labrelay's
own) and the v1 value type it must have.  A v1 key with no INI key
(``ini=None``) is one frp added with the v1 format; labrelay does not
implement any of them yet.  The facts come from frp's
``pkg/config/legacy/conversion.go`` and the json tags of
``pkg/config/v1``, v0.52 to v0.70.

V1 value types: ``str``, ``int``, ``bool``, ``list`` (array of strings),
``ports`` (``allowPorts``: tables of ``start``/``end`` or ``single``),
``scopes`` (``auth.additionalScopes``), ``map`` (a table of strings whose
keys are the user's, such as ``metadatas``), ``flags`` (a table of
booleans: ``featureGates``), ``table`` (a table whose presence means
something: ``webServer.tls`` on frps), ``any`` (a structure labrelay
ignores as a whole).
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

V1_KINDS = ("str", "int", "bool", "list", "ports", "scopes", "map", "flags", "table")
V1_KINDS += ("any",)

#: auth.additionalScopes values and the INI keys they stand for.
AUTH_SCOPES = {
    "HeartBeats": "authenticate_heartbeats",
    "NewWorkConns": "authenticate_new_work_conns",
}

#: The v1 table holding labrelay's own keys (camelCase), which frp has not.
OWN_TABLE = "labrelay"


@attrs.frozen
class V1Key:
    """One v1 key: its dotted path, the INI key it is, its value type."""

    path: str
    #: the INI key (or, for ``map``, the INI key prefix such as ``meta_``);
    #: None: a key of the v1 format only
    ini: Optional[str]
    kind: str
    #: frp's default of a v1-only key that is not its zero value
    default: object = None
    #: proxy or visitor types that have the key (None: every type)
    types: Optional[tuple[str, ...]] = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in V1_KINDS:
            raise ValueError(f"unknown v1 kind {self.kind!r}")


def _keys(*rows) -> tuple[V1Key, ...]:
    return tuple(V1Key(*row) if isinstance(row, tuple) else row for row in rows)


_AUTH_COMMON = (
    ("auth.method", "authentication_method", "str"),
    # the scopes stand for two INI keys, both named in AUTH_SCOPES
    ("auth.additionalScopes", "authenticate_heartbeats", "scopes"),
    ("auth.token", "token", "str"),
    ("auth.tokenSource.type", None, "str"),
    ("auth.tokenSource.file.path", None, "str"),
    ("auth.tokenSource.exec.command", None, "str"),
    ("auth.tokenSource.exec.args", None, "list"),
    ("auth.tokenSource.exec.env", None, "any"),
)

_LOG = (
    ("log.to", "log_file", "str"),
    ("log.level", "log_level", "str"),
    ("log.maxDays", "log_max_days", "int"),
    ("log.disablePrintColor", "disable_log_color", "bool"),
)

#: frps.toml
SERVER_V1_KEYS = _keys(
    *_AUTH_COMMON,
    ("auth.oidc.issuer", "oidc_issuer", "str"),
    ("auth.oidc.audience", "oidc_audience", "str"),
    ("auth.oidc.skipExpiryCheck", "oidc_skip_expiry_check", "bool"),
    ("auth.oidc.skipIssuerCheck", "oidc_skip_issuer_check", "bool"),
    ("bindAddr", "bind_addr", "str"),
    ("bindPort", "bind_port", "int"),
    ("kcpBindPort", "kcp_bind_port", "int"),
    ("quicBindPort", "quic_bind_port", "int"),
    ("proxyBindAddr", "proxy_bind_addr", "str"),
    ("vhostHTTPPort", "vhost_http_port", "int"),
    ("vhostHTTPTimeout", "vhost_http_timeout", "int"),
    ("vhostHTTPSPort", "vhost_https_port", "int"),
    ("tcpmuxHTTPConnectPort", "tcpmux_httpconnect_port", "int"),
    ("tcpmuxPassthrough", "tcpmux_passthrough", "bool"),
    ("subDomainHost", "subdomain_host", "str"),
    ("custom404Page", "custom_404_page", "str"),
    ("sshTunnelGateway.bindPort", None, "int"),
    ("sshTunnelGateway.privateKeyFile", None, "str"),
    ("sshTunnelGateway.autoGenPrivateKeyPath", None, "str"),
    ("sshTunnelGateway.authorizedKeysFile", None, "str"),
    ("webServer.addr", "dashboard_addr", "str"),
    ("webServer.port", "dashboard_port", "int"),
    ("webServer.user", "dashboard_user", "str"),
    ("webServer.password", "dashboard_pwd", "str"),
    ("webServer.assetsDir", "assets_dir", "str"),
    ("webServer.pprofEnable", "pprof_enable", "bool"),
    # frp serves the dashboard over TLS when the table is there at all
    ("webServer.tls", "dashboard_tls_mode", "table"),
    ("webServer.tls.certFile", "dashboard_tls_cert_file", "str"),
    ("webServer.tls.keyFile", "dashboard_tls_key_file", "str"),
    ("webServer.tls.trustedCaFile", None, "str"),
    ("webServer.tls.serverName", None, "str"),
    ("enablePrometheus", "enable_prometheus", "bool"),
    *_LOG,
    ("transport.tcpMux", "tcp_mux", "bool"),
    ("transport.tcpMuxKeepaliveInterval", "tcp_mux_keepalive_interval", "int"),
    ("transport.tcpKeepalive", "tcp_keepalive", "int"),
    ("transport.maxPoolCount", "max_pool_count", "int"),
    ("transport.heartbeatTimeout", "heartbeat_timeout", "int"),
    ("transport.quic.keepalivePeriod", "quic_keepalive_period", "int"),
    ("transport.quic.maxIdleTimeout", "quic_max_idle_timeout", "int"),
    ("transport.quic.maxIncomingStreams", "quic_max_incoming_streams", "int"),
    ("transport.tls.force", "tls_only", "bool"),
    ("transport.tls.certFile", "tls_cert_file", "str"),
    ("transport.tls.keyFile", "tls_key_file", "str"),
    ("transport.tls.trustedCaFile", "tls_trusted_ca_file", "str"),
    ("transport.tls.serverName", None, "str"),
    ("detailedErrorsToClient", "detailed_errors_to_client", "bool"),
    ("maxPortsPerClient", "max_ports_per_client", "int"),
    ("userConnTimeout", "user_conn_timeout", "int"),
    ("udpPacketSize", "udp_packet_size", "int"),
    (
        "natholeAnalysisDataReserveHours",
        "nat_hole_analysis_data_reserve_hours",
        "int",
    ),
    ("allowPorts", "allow_ports", "ports"),
    ("httpPlugins", None, "any"),
)

#: frpc.toml, besides [[proxies]] and [[visitors]]
CLIENT_V1_KEYS = _keys(
    *_AUTH_COMMON,
    ("auth.oidc.clientID", "oidc_client_id", "str"),
    ("auth.oidc.clientSecret", "oidc_client_secret", "str"),
    ("auth.oidc.audience", "oidc_audience", "str"),
    ("auth.oidc.scope", "oidc_scope", "str"),
    ("auth.oidc.tokenEndpointURL", "oidc_token_endpoint_url", "str"),
    ("auth.oidc.additionalEndpointParams", "oidc_additional_", "map"),
    ("auth.oidc.trustedCaFile", None, "str"),
    ("auth.oidc.insecureSkipVerify", None, "bool"),
    ("auth.oidc.proxyURL", None, "str"),
    ("auth.oidc.tokenSource.type", None, "str"),
    ("auth.oidc.tokenSource.file.path", None, "str"),
    ("auth.oidc.tokenSource.exec.command", None, "str"),
    ("auth.oidc.tokenSource.exec.args", None, "list"),
    ("auth.oidc.tokenSource.exec.env", None, "any"),
    ("user", "user", "str"),
    ("clientID", None, "str"),
    ("serverAddr", "server_addr", "str"),
    ("serverPort", "server_port", "int"),
    ("natHoleStunServer", "nat_hole_stun_server", "str"),
    ("dnsServer", "dns_server", "str"),
    ("loginFailExit", "login_fail_exit", "bool"),
    ("start", "start", "list"),
    *_LOG,
    ("webServer.addr", "admin_addr", "str"),
    ("webServer.port", "admin_port", "int"),
    ("webServer.user", "admin_user", "str"),
    ("webServer.password", "admin_pwd", "str"),
    ("webServer.assetsDir", "assets_dir", "str"),
    ("webServer.pprofEnable", "pprof_enable", "bool"),
    ("webServer.tls", None, "table"),
    ("webServer.tls.certFile", None, "str"),
    ("webServer.tls.keyFile", None, "str"),
    ("webServer.tls.trustedCaFile", None, "str"),
    ("webServer.tls.serverName", None, "str"),
    ("transport.protocol", "protocol", "str"),
    ("transport.wireProtocol", None, "str", "v1"),
    ("transport.dialServerTimeout", "dial_server_timeout", "int"),
    ("transport.dialServerKeepalive", "dial_server_keepalive", "int"),
    ("transport.connectServerLocalIP", "connect_server_local_ip", "str"),
    ("transport.proxyURL", "http_proxy", "str"),
    ("transport.poolCount", "pool_count", "int"),
    ("transport.tcpMux", "tcp_mux", "bool"),
    ("transport.tcpMuxKeepaliveInterval", "tcp_mux_keepalive_interval", "int"),
    ("transport.quic.keepalivePeriod", "quic_keepalive_period", "int"),
    ("transport.quic.maxIdleTimeout", "quic_max_idle_timeout", "int"),
    ("transport.quic.maxIncomingStreams", "quic_max_incoming_streams", "int"),
    ("transport.heartbeatInterval", "heartbeat_interval", "int"),
    ("transport.heartbeatTimeout", "heartbeat_timeout", "int"),
    ("transport.tls.enable", "tls_enable", "bool"),
    (
        "transport.tls.disableCustomTLSFirstByte",
        "disable_custom_tls_first_byte",
        "bool",
    ),
    ("transport.tls.certFile", "tls_cert_file", "str"),
    ("transport.tls.keyFile", "tls_key_file", "str"),
    ("transport.tls.trustedCaFile", "tls_trusted_ca_file", "str"),
    ("transport.tls.serverName", "tls_server_name", "str"),
    ("virtualNet.address", None, "str"),
    ("featureGates", None, "flags"),
    ("udpPacketSize", "udp_packet_size", "int"),
    ("metadatas", "meta_", "map"),
    ("includes", "includes", "list"),
    ("store.path", None, "str"),
)

_HTTP = ("http",)
_DOMAINS = ("http", "https", "tcpmux")
_SECRET = ("stcp", "sudp", "xtcp")

#: one entry of [[proxies]]; ``name`` is the proxy (the INI section name)
PROXY_V1_KEYS = _keys(
    ("name", None, "str"),
    ("type", "type", "str"),
    ("enabled", None, "bool", True),
    ("annotations", None, "map"),
    ("transport.useEncryption", "use_encryption", "bool"),
    ("transport.useCompression", "use_compression", "bool"),
    ("transport.bandwidthLimit", "bandwidth_limit", "str"),
    ("transport.bandwidthLimitMode", "bandwidth_limit_mode", "str"),
    ("transport.proxyProtocolVersion", "proxy_protocol_version", "str"),
    ("metadatas", "meta_", "map"),
    ("loadBalancer.group", "group", "str"),
    ("loadBalancer.groupKey", "group_key", "str"),
    ("healthCheck.type", "health_check_type", "str"),
    ("healthCheck.timeoutSeconds", "health_check_timeout_s", "int"),
    ("healthCheck.maxFailed", "health_check_max_failed", "int"),
    ("healthCheck.intervalSeconds", "health_check_interval_s", "int"),
    ("healthCheck.path", "health_check_url", "str"),
    ("healthCheck.httpHeaders", None, "any"),
    ("localIP", "local_ip", "str"),
    ("localPort", "local_port", "int"),
    # the proxy's plugin; its options are listed in PLUGIN_V1_OPTIONS
    ("plugin.type", "plugin", "str"),
    V1Key("remotePort", "remote_port", "int", types=("tcp", "udp")),
    V1Key("customDomains", "custom_domains", "list", types=_DOMAINS),
    V1Key("subdomain", "subdomain", "str", types=_DOMAINS),
    V1Key("locations", "locations", "list", types=_HTTP),
    V1Key("httpUser", "http_user", "str", types=("http", "tcpmux")),
    V1Key("httpPassword", "http_pwd", "str", types=("http", "tcpmux")),
    V1Key("hostHeaderRewrite", "host_header_rewrite", "str", types=_HTTP),
    V1Key("requestHeaders.set", "header_", "map", types=_HTTP),
    V1Key("responseHeaders.set", None, "map", types=_HTTP),
    V1Key("routeByHTTPUser", "route_by_http_user", "str", types=("http", "tcpmux")),
    V1Key("multiplexer", "multiplexer", "str", types=("tcpmux",)),
    V1Key("secretKey", "sk", "str", types=_SECRET),
    V1Key("allowUsers", "allow_users", "list", types=_SECRET),
    V1Key("natTraversal.disableAssistedAddrs", None, "bool", types=("xtcp",)),
)

#: one entry of [[visitors]] (labrelay runs stcp visitors; the keys of the
#: others are recognised, so that a misspelt key is still reported)
VISITOR_V1_KEYS = _keys(
    ("name", None, "str"),
    ("type", "type", "str"),
    ("enabled", None, "bool", True),
    ("transport.useEncryption", "use_encryption", "bool"),
    ("transport.useCompression", "use_compression", "bool"),
    ("secretKey", "sk", "str"),
    ("serverUser", "server_user", "str"),
    ("serverName", "server_name", "str"),
    ("bindAddr", "bind_addr", "str"),
    ("bindPort", "bind_port", "int"),
    ("plugin.type", None, "str"),
    V1Key("protocol", "protocol", "str", types=("xtcp",)),
    V1Key("keepTunnelOpen", "keep_tunnel_open", "bool", types=("xtcp",)),
    V1Key("maxRetriesAnHour", "max_retries_an_hour", "int", types=("xtcp",)),
    V1Key("minRetryInterval", "min_retry_interval", "int", types=("xtcp",)),
    V1Key("fallbackTo", "fallback_to", "str", types=("xtcp",)),
    V1Key("fallbackTimeoutMs", "fallback_timeout_ms", "int", types=("xtcp",)),
    V1Key("natTraversal.disableAssistedAddrs", None, "bool", types=("xtcp",)),
)

#: The options of frp's client plugins (``[proxies.plugin]``,
#: ``[visitors.plugin]``): option -> (INI key, v1 type).  labrelay runs no
#: plugin yet: a proxy with one is skipped with a warning.
PLUGIN_V1_OPTIONS = {
    "unixPath": ("plugin_unix_path", "str"),
    "httpUser": ("plugin_http_user", "str"),
    "httpPassword": ("plugin_http_passwd", "str"),
    "username": ("plugin_user", "str"),
    "password": ("plugin_passwd", "str"),
    "localPath": ("plugin_local_path", "str"),
    "stripPrefix": ("plugin_strip_prefix", "str"),
    "localAddr": ("plugin_local_addr", "str"),
    "crtPath": ("plugin_crt_path", "str"),
    "keyPath": ("plugin_key_path", "str"),
    "hostHeaderRewrite": ("plugin_host_header_rewrite", "str"),
    "requestHeaders.set": ("plugin_header_", "map"),
    "enableHTTP2": ("plugin_enable_http2", "bool"),
    "destinationIP": ("plugin_destination_ip", "str"),
}

#: [[proxies]] keys with the plugin options as ``plugin.<option>``
PROXY_V1_KEYS_WITH_PLUGINS = PROXY_V1_KEYS + tuple(
    V1Key(f"plugin.{option}", ini, kind)
    for option, (ini, kind) in PLUGIN_V1_OPTIONS.items()
)
VISITOR_V1_KEYS_WITH_PLUGINS = VISITOR_V1_KEYS + tuple(
    V1Key(f"plugin.{option}", None, kind)
    for option, (ini, kind) in PLUGIN_V1_OPTIONS.items()
)

#: The keys of one ``[[httpPlugins]]`` entry of frps (server plugins);
#: ``tls_verify`` is v0.52's spelling of ``tlsVerify``.
HTTP_PLUGIN_V1_KEYS = frozenset({"name", "addr", "path", "ops", "tlsVerify"})
HTTP_PLUGIN_V1_KEYS |= {"tls_verify"}

#: proxy and visitor types of frp's v1 format
PROXY_V1_TYPES = ("tcp", "udp", "http", "https", "tcpmux", "stcp", "sudp", "xtcp")
VISITOR_V1_TYPES = ("stcp", "sudp", "xtcp")


def camel_case(snake: str) -> str:
    """``max_unauthenticated_per_source`` -> ``maxUnauthenticatedPerSource``."""
    head, *rest = snake.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def own_keys(own_table: dict[str, str]) -> tuple[V1Key, ...]:
    """``labrelay.<camelCase>`` entries for labrelay's own INI keys
    (``SERVER_OWN_KEYS`` or ``CLIENT_OWN_KEYS``: key -> INI kind)."""
    return tuple(
        V1Key(f"{OWN_TABLE}.{camel_case(key)}", key, v1_kind(kind))
        for key, kind in own_table.items()
    )


def v1_kind(ini_kind: str) -> str:
    """The v1 value type of an INI value kind (see :mod:`.schema`)."""
    return {"port": "int", "port1": "int"}.get(ini_kind, ini_kind)


def keys_by_path(keys) -> dict[str, V1Key]:
    """path -> :class:`V1Key`."""
    return {key.path: key for key in keys}


def keys_by_ini(keys) -> dict[str, V1Key]:
    """INI key -> :class:`V1Key` (the first of a path, for the scopes)."""
    table: dict[str, V1Key] = {}
    for key in keys:
        if key.ini is None:
            continue
        if key.kind == "scopes":
            for ini in AUTH_SCOPES.values():
                table.setdefault(ini, key)
        else:
            table.setdefault(key.ini, key)
    return table


_SNAKE_WORD = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


def rename_ini_words(text: str, by_ini: dict[str, V1Key]) -> str:
    """*text* with each INI key that has a v1 path written as that path
    (only snake_case words: plain words are left alone)."""

    def v1_name(match) -> str:
        key = by_ini.get(match.group(0))
        return key.path if key is not None and key.kind != "map" else match.group(0)

    return _SNAKE_WORD.sub(v1_name, text)
