# -*- test-case-name: tests.unit.test_config_schema -*-
"""
Tests for the config schema: the key tables and the reload sets generated
from the field metadata of the config models equal the tables that were
kept by hand before (copied here as the expectation).
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from labrelay import config
from labrelay.client import reload as client_reload
from labrelay.config import PortSet
from labrelay.config.schema import key_table, reloadable_keys, setting
from labrelay.server import reload as server_reload

# -- the hand-kept tables, as they were before the schema -------------------

OLD_SERVER_KEYS = {
    "bind_addr": "str",
    "bind_port": "port1",
    "proxy_bind_addr": "str",
    "vhost_http_port": "port",
    "vhost_http_timeout": "int",
    "vhost_https_port": "port",
    "tcpmux_httpconnect_port": "port",
    "tcpmux_passthrough": "bool",
    "subdomain_host": "str",
    "custom_404_page": "str",
    "token": "str",
    "authentication_method": "str",
    "authenticate_heartbeats": "bool",
    "authenticate_new_work_conns": "bool",
    "heartbeat_timeout": "int",
    "user_conn_timeout": "int",
    "allow_ports": "ports",
    "max_pool_count": "int",
    "max_ports_per_client": "int",
    "udp_packet_size": "int",
    "tls_only": "bool",
    "tls_cert_file": "str",
    "tls_key_file": "str",
    "tls_trusted_ca_file": "str",
    "tcp_mux": "bool",
    "tcp_mux_keepalive_interval": "int",
    "tcp_keepalive": "int",
    "detailed_errors_to_client": "bool",
    "log_file": "str",
    "log_level": "str",
    "log_way": "str",
    "disable_log_color": "bool",
    "log_max_days": "int",
    "dashboard_addr": "str",
    "dashboard_port": "port",
    "dashboard_user": "str",
    "dashboard_pwd": "str",
    "dashboard_tls_mode": "bool",
    "dashboard_tls_cert_file": "str",
    "dashboard_tls_key_file": "str",
    "enable_prometheus": "bool",
    "assets_dir": "str",
}

OLD_SERVER_OWN_KEYS = {
    "auth_timestamp_skew": "int",
    "max_unauthenticated_per_source": "int",
    "max_unauthenticated_connections": "int",
    "max_proxies_per_client": "int",
    "unauthenticated_timeout": "int",
    "session_idle_timeout": "int",
    "max_sessions_per_client": "int",
    "dashboard_allowed_hosts": "list",  # not a limit: the dashboard's Host
    "max_domains_per_proxy": "int",
    "max_locations_per_proxy": "int",
    "max_routes_per_proxy": "int",
    "max_routes_total": "int",
    "max_logins_per_connection": "int",
    "max_clients_per_user": "int",
    "max_clients_per_source": "int",
    "max_proxies_total": "int",
    "max_tracked_proxies": "int",
    "auth_pending_per_source": "int",
    "auth_failures_per_second": "int",
    "work_conn_same_source": "bool",
    "max_buffered_bytes": "int",
}

OLD_CLIENT_KEYS = {
    "server_addr": "str",
    "server_port": "port1",
    "protocol": "str",
    "user": "str",
    "token": "str",
    "authentication_method": "str",
    "authenticate_heartbeats": "bool",
    "authenticate_new_work_conns": "bool",
    "pool_count": "int",
    "tcp_mux": "bool",
    "tcp_mux_keepalive_interval": "int",
    "heartbeat_interval": "int",
    "heartbeat_timeout": "int",
    "login_fail_exit": "bool",
    "dial_server_timeout": "int",
    "dial_server_keepalive": "int",
    "connect_server_local_ip": "str",
    "tls_enable": "bool",
    "tls_cert_file": "str",
    "tls_key_file": "str",
    "tls_trusted_ca_file": "str",
    "tls_server_name": "str",
    "disable_custom_tls_first_byte": "bool",
    "udp_packet_size": "int",
    "start": "list",
    "includes": "list",
    "log_file": "str",
    "log_level": "str",
    "log_way": "str",
    "disable_log_color": "bool",
    "log_max_days": "int",
    "admin_addr": "str",
    "admin_port": "port",
    "admin_user": "str",
    "admin_pwd": "str",
}

OLD_CLIENT_OWN_KEYS = {"max_buffered_bytes": "int"}

OLD_PROXY_KEYS = {
    "type": "str",
    "local_ip": "str",
    "local_port": "port",
    "use_encryption": "bool",
    "use_compression": "bool",
    "role": "str",
}

OLD_TCP_PROXY_KEYS = {"remote_port": "port"}

OLD_HTTP_PROXY_KEYS = {
    "custom_domains": "list",
    "subdomain": "str",
    "locations": "list",
    "http_user": "str",
    "http_pwd": "str",
    "host_header_rewrite": "str",
    "route_by_http_user": "str",
}

OLD_RELOADABLE = frozenset(
    {
        "allow_ports",
        "max_ports_per_client",
        "max_pool_count",
        "max_proxies_per_client",
        "max_unauthenticated_per_source",
        "max_unauthenticated_connections",
        "unauthenticated_timeout",
        "session_idle_timeout",
        "max_sessions_per_client",
        "auth_timestamp_skew",
        "token",
        "authenticate_heartbeats",
        "authenticate_new_work_conns",
        "user_conn_timeout",
        "heartbeat_timeout",
        "detailed_errors_to_client",
        "max_buffered_bytes",
        "dashboard_user",
        "dashboard_pwd",
        "log_level",
        "max_domains_per_proxy",
        "max_locations_per_proxy",
        "max_routes_per_proxy",
        "max_routes_total",
        "max_logins_per_connection",
        "max_clients_per_user",
        "max_clients_per_source",
        "max_proxies_total",
        "max_tracked_proxies",
        "auth_pending_per_source",
        "auth_failures_per_second",
        "work_conn_same_source",
    }
)

OLD_ADMIN_KEYS = frozenset({"admin_addr", "admin_port", "admin_user", "admin_pwd"})
OLD_CLIENT_NOT_COMMON = (
    frozenset({"proxies", "source", "warnings", "start", "includes"}) | OLD_ADMIN_KEYS
)


class GeneratedTablesTests(SynchronousTestCase):
    """The tables the parser and the reloads use are the ones kept by hand
    before (same keys, same kinds)."""

    def test_server_keys(self):
        """frps.ini [common]: frp's implemented keys, labrelay's own."""
        self.assertEqual(config.SERVER_KEYS, OLD_SERVER_KEYS)
        self.assertEqual(config.SERVER_OWN_KEYS, OLD_SERVER_OWN_KEYS)

    def test_client_keys(self):
        """frpc.ini [common]: frp's implemented keys, labrelay's own."""
        self.assertEqual(config.CLIENT_KEYS, OLD_CLIENT_KEYS)
        self.assertEqual(config.CLIENT_OWN_KEYS, OLD_CLIENT_OWN_KEYS)

    def test_proxy_keys(self):
        """Proxy sections: keys of every type, of tcp, of http."""
        self.assertEqual(config.PROXY_KEYS, OLD_PROXY_KEYS)
        self.assertEqual(config.TCP_PROXY_KEYS, OLD_TCP_PROXY_KEYS)
        self.assertEqual(config.HTTP_PROXY_KEYS, OLD_HTTP_PROXY_KEYS)

    def test_server_reloadable(self):
        """A server reload applies the same keys as before."""
        self.assertEqual(server_reload.RELOADABLE, OLD_RELOADABLE)

    def test_client_reload_sets(self):
        """A client reload applies the same [common] keys as before."""
        self.assertEqual(client_reload.ADMIN_KEYS, OLD_ADMIN_KEYS)
        self.assertEqual(client_reload._NOT_COMMON, OLD_CLIENT_NOT_COMMON)


class SettingTests(SynchronousTestCase):
    """schema.setting declares a key; the tables read it back."""

    def test_kinds_and_flags(self):
        """The kind follows the default unless given; own, reloadable and
        proxy types select the tables a key lands in."""

        @attrs.frozen
        class Model:
            plain: str = setting("x")
            flag: bool = setting(False, reloadable=True)
            port: int = setting(0, "port", proxy_types=("tcp",))
            ports: PortSet = setting(PortSet(), own=True)
            names: tuple[str, ...] = setting(())
            source: str = "-"

        self.assertEqual(
            key_table(Model),
            {"plain": "str", "flag": "bool", "port": "port", "names": "list"},
        )
        self.assertEqual(key_table(Model, own=True), {"ports": "ports"})
        self.assertEqual(key_table(Model, proxy_type="tcp"), {"port": "port"})
        self.assertEqual(key_table(Model, proxy_type="http"), {})
        self.assertEqual(
            set(key_table(Model, proxy_type="")), {"plain", "flag", "names"}
        )
        self.assertEqual(reloadable_keys(Model), {"flag"})

    def test_unknown_kind(self):
        """A kind the parsers cannot convert is refused when declared."""
        self.assertRaises(ValueError, setting, 0, "float")
        self.assertRaises(TypeError, setting, 0.5)
