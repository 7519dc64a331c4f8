# -*- test-case-name: tests.unit.test_config -*-
"""
Tests for labrelay.config (and its ini and template layers): the frp legacy
INI dialect, templates, defaults, validation messages, warnings, range
sections, start, includes and the seed configs captured with real frp.
"""

from __future__ import annotations

import os
from textwrap import dedent

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from labrelay import config
from labrelay.config import (
    ClientConfig,
    ConfigError,
    PortSet,
    ProxyConfig,
    ServerConfig,
    load_client_config,
    load_server_config,
    parse_client_config,
    parse_port_ranges,
    parse_server_config,
)
from labrelay.config.ini import parse_go_int
from labrelay.config.template import render_template

from ..support.paths import DATA

SEEDS = ("plain-mux", "plain-nomux", "login-bad-token")


def client(text: str, **kwargs) -> ClientConfig:
    """Parse dedented frpc.ini text."""
    kwargs.setdefault("environ", {})
    return parse_client_config(dedent(text), **kwargs)


def server(text: str, **kwargs) -> ServerConfig:
    """Parse dedented frps.ini text."""
    kwargs.setdefault("environ", {})
    return parse_server_config(dedent(text), **kwargs)


def proxy(body: str, **kwargs) -> ProxyConfig:
    """The single proxy of a client config made of [common] and ``body``."""
    (only,) = client("[common]\n" + dedent(body), **kwargs).proxies
    return only


class ErrorAssertions:
    """Helpers asserting a ConfigError message names file, section and key."""

    def assert_error(self, parse, text, *fragments, **kwargs) -> str:
        error = self.assertRaises(ConfigError, parse, text, **kwargs)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class DialectTests(SynchronousTestCase, ErrorAssertions):
    """The gopkg.in/ini.v1 dialect as frp configures it."""

    def test_both_delimiters_and_trimming(self):
        """``key = value`` and ``key: value`` both work; values are trimmed."""
        c = client("[common]\nserver_addr:   example.com   \ntoken =   abc  \n")
        self.assertEqual((c.server_addr, c.token), ("example.com", "abc"))

    def test_first_delimiter_splits(self):
        """The first ``=`` or ``:`` ends the key, so values may contain both."""
        c = client("[common]\ntoken = a:b=c\nmeta_url: http://x/?a=1\n")
        self.assertEqual(c.token, "a:b=c")
        self.assertEqual(c.metas, (("url", "http://x/?a=1"),))

    def test_surrounding_quotes_removed(self):
        """Matching surrounding double or single quotes are removed."""
        c = client('[common]\ntoken = "a b"\nuser = \'me\'\nserver_addr = "x"y"\n')
        self.assertEqual((c.token, c.user), ("a b", "me"))
        self.assertEqual(c.server_addr, '"x"y"')

    def test_triple_quoted_multiline(self):
        """A triple-quoted value spans lines and keeps them verbatim."""
        c = client('[common]\ntoken = """one\ntwo"""\nuser = """\nx\n"""\n')
        self.assertEqual(c.token, "one\ntwo")
        self.assertEqual(c.user, "\nx\n")

    def test_backquoted_value(self):
        """A backquoted value is taken literally, quotes and all inside."""
        c = client('[common]\ntoken = `a "b" c`\n')
        self.assertEqual(c.token, 'a "b" c')

    def test_unclosed_triple_quote(self):
        """An unclosed triple quote is an error naming the file."""
        self.assert_error(client, '[common]\ntoken = """abc\n', "frpc.ini", "line 2")

    def test_backslash_continuation(self):
        """A trailing backslash joins the next (trimmed) line."""
        c = client("[common]\ntoken = abc\\\n   def\\\n  ghi\nuser = u\n")
        self.assertEqual((c.token, c.user), ("abcdefghi", "u"))

    def test_comments(self):
        """Lines starting with # or ; are comments; inline ones are kept."""
        c = client("[common]\n# token = no\n  ; token = no\ntoken = abc # secret\n")
        self.assertEqual(c.token, "abc # secret")

    def test_bare_key_is_true(self):
        """A key without a value is boolean true."""
        s = server("[common]\nauthenticate_heartbeats\n  tcp_mux\n")
        self.assertTrue(s.authenticate_heartbeats)
        self.assertTrue(s.tcp_mux)

    def test_go_bool_spellings(self):
        """Every Go boolean spelling is accepted."""
        for word in "1 t T true TRUE True y yes YES Yes on ON On".split():
            s = server(f"[common]\nauthenticate_heartbeats = {word}\n")
            self.assertTrue(s.authenticate_heartbeats, word)
        for word in "0 f F false FALSE False n no NO No off OFF Off".split():
            s = server(f"[common]\ntcp_mux = {word}\n")
            self.assertFalse(s.tcp_mux, word)

    def test_bad_bool_refused(self):
        """An unparseable boolean is refused (frp would silently ignore it)."""
        self.assert_error(
            server,
            "[common]\ntcp_mux = maybe\n",
            "frps.ini: [common] tcp_mux: ",
            "'maybe'",
        )

    def test_go_ints(self):
        """Integers use Go base-0 syntax: hex, leading-0 octal, _ separators."""
        cases = {
            "0x10": 16,
            "010": 8,
            "0o17": 15,
            "0b11": 3,
            "1_000": 1000,
            "-5": -5,
            "+7": 7,
            "0": 0,
            "0_7": 7,
            "0X_1f": 31,
        }
        for text, value in cases.items():
            self.assertEqual(parse_go_int(text), value, text)
        s = server("[common]\nuser_conn_timeout = 0x1E\nmax_pool_count = 011\n")
        self.assertEqual((s.user_conn_timeout, s.max_pool_count), (30, 9))

    def test_bad_ints_refused(self):
        """Malformed integers are errors naming the key."""
        for text in (
            "08",
            "1__0",
            "_1",
            "1_",
            "abc",
            "1.5",
            "0x",
            "1 0",
            "9223372036854775808",
            "true",
        ):
            self.assert_error(
                server,
                f"[common]\nuser_conn_timeout = {text}\n",
                "[common] user_conn_timeout: ",
            )

    def test_duplicate_keys_last_wins(self):
        """A repeated key takes its last value."""
        self.assertEqual(client("[common]\ntoken = a\ntoken = b\n").token, "b")

    def test_duplicate_sections_merged(self):
        """A section written twice is one section."""
        p = proxy("[web]\ntype = tcp\n[common]\nuser = u\n[web]\nlocal_port = 8\n")
        self.assertEqual((p.name, p.local_port), ("u.web", 8))

    def test_keys_before_any_section_ignored(self):
        """Keys before the first section are ignored, with a warning."""
        c = client("token = early\n[common]\n")
        self.assertEqual(c.token, "")
        self.assertEqual(
            c.warnings,
            ("frpc.ini [DEFAULT] token: written before any section; ignored",),
        )

    def test_case_sensitive_names(self):
        """Key and section names are case-sensitive."""
        c = client("[common]\nToken = x\n")
        self.assertEqual(c.token, "")
        self.assertEqual(
            c.warnings,
            ("frpc.ini [common] Token: unknown key; ignored (did you mean 'token'?)",),
        )
        self.assert_error(client, "[Common]\n", "frpc.ini: [common] ")

    def test_empty_value_keeps_default(self):
        """``key =`` keeps frp's default."""
        s = server("[common]\nbind_port =\nbind_addr =\n")
        self.assertEqual((s.bind_port, s.bind_addr), (7000, "0.0.0.0"))
        self.assertEqual(
            proxy("[a]\nlocal_ip =\nlocal_port = 1\n").local_ip, "127.0.0.1"
        )

    def test_syntax_errors(self):
        """Broken section headers and empty key names are errors with a line."""
        self.assert_error(
            client, "[common]\n[ssh\n", "frpc.ini: line 2: ", "unclosed section"
        )
        self.assert_error(client, "[common]\n= x\n", "line 2", "empty key")
        self.assert_error(client, "[]\n", "line 1", "empty section")

    def test_lists(self):
        """Lists are comma-separated and trimmed; ``\\,`` is a literal comma."""
        c = client("[common]\nstart = a , b,, c\\,d ,\n")
        self.assertEqual(c.start, ("a", "b", "c,d"))

    def test_dotted_parent_sections(self):
        """A key missing from [a.b] is taken from [a], as go-ini does."""
        c = client(
            "[common]\n[web]\nlocal_port = 80\nmeta_x = 1\n"
            "[web.api]\nremote_port = 81\n"
        )
        child = c.proxies[1]
        self.assertEqual(
            (child.name, child.local_port, child.remote_port), ("web.api", 80, 81)
        )
        self.assertEqual(child.metas, ())

    def test_byte_order_mark(self):
        """A leading UTF-8 byte order mark is ignored."""
        self.assertEqual(client("\ufeff[common]\ntoken = t\n").token, "t")


class TemplateTests(SynchronousTestCase, ErrorAssertions):
    """The Go text/template subset rendered before parsing."""

    def test_env(self):
        """``{{ .Envs.NAME }}`` renders the variable, with or without spaces."""
        c = client(
            "[common]\nserver_addr = {{ .Envs.HOST }}\ntoken = {{.Envs.TOKEN}}\n",
            environ={"HOST": "relay.example", "TOKEN": "s3"},
        )
        self.assertEqual((c.server_addr, c.token), ("relay.example", "s3"))

    def test_missing_env_is_an_error(self):
        """A variable that is not set is an error naming it and the line,
        not a token that reads ``<no value>``."""
        self.assert_error(
            client,
            "[common]\nserver_addr = x\ntoken = {{ .Envs.NOPE }}\n",
            "frpc.ini: line 3: {{ .Envs.NOPE }}: environment variable NOPE is not set",
            "LABRELAY_ALLOW_UNSET_ENVS=1",
            environ={},
        )

    def test_missing_env_opt_in(self):
        """With LABRELAY_ALLOW_UNSET_ENVS=1 a missing variable renders as
        ``<no value>``, as in frp."""
        c = client(
            "[common]\ntoken = {{ .Envs.NOPE }}\n",
            environ={"LABRELAY_ALLOW_UNSET_ENVS": "1"},
        )
        self.assertEqual(c.token, "<no value>")

    def test_default_environ(self):
        """Without ``environ`` the process environment is used."""
        self.patch(os, "environ", {"LABRELAY_T": "from-env"})
        c = parse_client_config("[common]\ntoken = {{ .Envs.LABRELAY_T }}\n")
        self.assertEqual(c.token, "from-env")

    def test_string_literals(self):
        """String literals escape ``{{``; raw strings and escapes work."""
        self.assertEqual(render_template('a{{ "{{" }}b{{ `}}` }}c', {}), "a{{b}}c")
        self.assertEqual(render_template(r'{{ "x\ty\u00e9\x41" }}', {}), "x\tyéA")

    def test_trim_markers(self):
        """``{{-`` and ``-}}`` trim the surrounding whitespace."""
        self.assertEqual(render_template('a \n {{- "b" -}} \n c', {}), "abc")
        self.assertEqual(render_template('a {{ "b" }} c', {}), "a b c")

    def test_comment(self):
        """A template comment renders nothing."""
        self.assertEqual(render_template("a{{/* }} */}}b", {}), "ab")

    def test_unsupported_constructs(self):
        """Functions, pipelines and variables are refused, named."""
        for action in (
            'printf "%s" .Envs.X',
            ".Envs.X | printf",
            "$x",
            "if .Envs.X",
            "3",
            ".Envs",
            ".Foo.X",
        ):
            self.assert_error(
                client,
                f"[common]\ntoken = {{{{ {action} }}}}\n",
                "frpc.ini: line 2: ",
                "not supported",
                action.split()[0],
            )

    def test_syntax_errors(self):
        """Unclosed actions and strings make the config invalid."""
        self.assert_error(
            client,
            "[common]\n\ntoken = {{ .Envs.X\n",
            "frpc.ini: line 3: ",
            "unclosed action",
        )
        self.assert_error(client, '[common]\ntoken = {{ "abc }}\n', "unterminated")
        self.assert_error(client, "[common]\ntoken = {{ }}\n", "empty")
        self.assert_error(client, '[common]\ntoken = {{ "\\q" }}\n', "escape")

    def test_server_templated(self):
        """frps.ini is templated too."""
        s = server("[common]\nbind_port = {{ .Envs.PORT }}\n", environ={"PORT": "7100"})
        self.assertEqual(s.bind_port, 7100)


class ServerTests(SynchronousTestCase, ErrorAssertions):
    """frps.ini [common]: defaults, resolutions, validation and warnings."""

    def test_defaults(self):
        """An empty [common] gives frp's defaults."""
        empty = server("[common]\n")
        # On every interface with no token: a warning, and nothing else.
        self.assertEqual(
            empty.warnings,
            (
                "frps.ini [common] token: empty: any client that reaches "
                "bind_port can log in; set a random token (openssl rand -hex 16)",
            ),
        )
        self.assertEqual(empty, ServerConfig(warnings=empty.warnings))
        s = ServerConfig()
        self.assertEqual(
            (
                s.bind_addr,
                s.bind_port,
                s.vhost_http_timeout,
                s.user_conn_timeout,
                s.max_pool_count,
                s.tcp_keepalive,
                s.tcp_mux,
                s.heartbeat_timeout,
                s.tcp_mux_keepalive_interval,
                s.detailed_errors_to_client,
                s.log_file,
                s.log_level,
                s.log_way,
            ),
            (
                "0.0.0.0",
                7000,
                60,
                10,
                5,
                7200,
                True,
                -1,
                30,
                True,
                "console",
                "info",
                "console",
            ),
        )
        self.assertTrue(s.allow_ports.is_all())

    def test_heartbeat_timeout_resolution(self):
        """Unset heartbeat_timeout is 90 without tcp_mux, -1 with it."""
        self.assertEqual(server("[common]\ntcp_mux = false\n").heartbeat_timeout, 90)
        self.assertEqual(server("[common]\ntcp_mux = true\n").heartbeat_timeout, -1)
        self.assertEqual(
            server("[common]\nheartbeat_timeout = 40\n").heartbeat_timeout, 40
        )

    def test_proxy_bind_addr(self):
        """proxy_bind_addr follows bind_addr unless set."""
        self.assertEqual(
            server("[common]\nbind_addr = 10.0.0.1\n").proxy_bind_addr, "10.0.0.1"
        )
        self.assertEqual(
            server(
                "[common]\nbind_addr = ::\nproxy_bind_addr = 127.0.0.1\n"
            ).proxy_bind_addr,
            "127.0.0.1",
        )

    def test_trusted_ca_forces_tls_only(self):
        """Setting tls_trusted_ca_file forces tls_only, as in frp v0.51."""
        s = server("[common]\ntls_only = false\ntls_trusted_ca_file = ca.pem\n")
        self.assertTrue(s.tls_only)

    def test_allow_ports(self):
        """allow_ports is a PortSet; bad syntax names the key."""
        s = server("[common]\nallow_ports = 2000-2002, 3000\n")
        self.assertEqual(s.allow_ports.ranges, ((2000, 2002), (3000, 3000)))
        self.assertIn(3000, s.allow_ports)
        self.assertNotIn(2999, s.allow_ports)
        for bad in ("2000-1000", "a", "1-2-3", "1,,2", "70000"):
            self.assert_error(
                server,
                f"[common]\nallow_ports = {bad}\n",
                "frps.ini: [common] allow_ports: ",
            )

    def test_port_ranges(self):
        """bind_port is 1-65535; other ports 0-65535."""
        self.assert_error(
            server,
            "[common]\nbind_port = 0\n",
            "frps.ini: [common] bind_port: ",
            "1-65535",
        )
        self.assert_error(server, "[common]\nbind_port = 65536\n", "bind_port")
        self.assertEqual(server("[common]\nvhost_http_port = 0\n").vhost_http_port, 0)
        self.assert_error(
            server,
            "[common]\nvhost_http_port = -1\n",
            "[common] vhost_http_port: ",
            "0-65535",
        )

    def test_authentication_method(self):
        """Only token authentication is accepted; oidc is not supported yet."""
        self.assert_error(
            server,
            "[common]\nauthentication_method = oidc\n",
            "frps.ini: [common] authentication_method: ",
            "not supported",
        )
        self.assert_error(
            server,
            "[common]\nauthentication_method = pw\n",
            "[common] authentication_method: ",
            "'pw'",
        )

    def test_log_settings(self):
        """log_way follows log_file; a bad log_level is refused."""
        s = server("[common]\nlog_file = /var/log/frps.log\nlog_way = console\n")
        self.assertEqual(s.log_way, "file")
        self.assert_error(
            server,
            "[common]\nlog_level = loud\n",
            "frps.ini: [common] log_level: ",
            "'loud'",
        )

    def test_tls_pair(self):
        """tls_cert_file and tls_key_file need each other."""
        self.assert_error(
            server,
            "[common]\ntls_cert_file = c.pem\n",
            "frps.ini: [common] tls_key_file: ",
        )
        self.assert_error(
            server,
            "[common]\ntls_key_file = k.pem\n",
            "frps.ini: [common] tls_cert_file: ",
        )
        s = server("[common]\ntls_cert_file = c\ntls_key_file = k\n")
        self.assertEqual((s.tls_cert_file, s.tls_key_file), ("c", "k"))

    def test_missing_common(self):
        """A file without [common] is refused."""
        self.assert_error(
            server,
            "[plugin.x]\naddr = a\n",
            "frps.ini: [common] ",
            "missing",
            source="frps.ini",
        )

    def test_not_yet_keys(self):
        """Each recognised-but-unimplemented key warns once, by name."""
        s = server(
            "[common]\nbind_addr = 127.0.0.1\nkcp_bind_port = 7000\n"
            "kcp_bind_port = 7001\n"
        )
        self.assertEqual(
            s.warnings,
            (
                "frps.ini [common] kcp_bind_port: not supported by labrelay yet; "
                "ignored",
            ),
        )
        self.assert_error(
            server, "[common]\nkcp_bind_port = x\n", "[common] kcp_bind_port: "
        )

    def test_unknown_and_client_keys(self):
        """A typo warns as unknown; an frpc key warns as such."""
        s = server("[common]\nbind_addr = ::1\nbind_prot = 1\nserver_addr = x\n")
        self.assertEqual(
            s.warnings,
            (
                "frps.ini [common] bind_prot: unknown key; ignored "
                "(did you mean 'bind_port'?)",
                "frps.ini [common] server_addr: a frpc key, not used here; ignored",
            ),
        )

    def test_old_keys(self):
        """Obsolete keys warn, naming their replacement where there is one."""
        replaced = {
            "privilege_token": "token",
            "privilege_allow_ports": "allow_ports",
            "dashboard_passwd": "dashboard_pwd",
        }
        for key, new in replaced.items():
            (warning,) = server(
                f"[common]\nbind_addr = 127.0.0.1\n{key} = x\n"
            ).warnings
            self.assertTrue(warning.startswith(f"frps.ini [common] {key}: "))
            self.assertIn(f"use {new} instead", warning)
        for key in ("bind_udp_port", "authentication_timeout", "privilege_mode"):
            (warning,) = server(
                f"[common]\nbind_addr = 127.0.0.1\n{key} = 1\n"
            ).warnings
            self.assertIn(f"[common] {key}: obsolete", warning)

    def test_plugin_sections(self):
        """A [plugin.*] section warns once; other sections are ignored."""
        s = server(
            "[common]\nbind_addr = 127.0.0.1\n[plugin.user]\naddr = 127.0.0.1:9000\n"
            "path = /h\n[ssh]\nlocal_port = 22\n"
        )
        self.assertEqual(
            s.warnings,
            (
                "frps.ini [plugin.user]: server plugins are not supported by "
                "labrelay yet; section ignored",
            ),
        )

    def test_every_frp_key_recognised(self):
        """No key of the reference's frps [common] table is 'unknown'."""
        keys = """bind_addr bind_port kcp_bind_port quic_bind_port
            quic_keepalive_period quic_max_idle_timeout
            quic_max_incoming_streams proxy_bind_addr vhost_http_port
            vhost_https_port vhost_http_timeout tcpmux_httpconnect_port
            tcpmux_passthrough dashboard_addr dashboard_port dashboard_user
            dashboard_pwd dashboard_tls_mode dashboard_tls_cert_file
            dashboard_tls_key_file enable_prometheus assets_dir log_file
            log_way log_level log_max_days disable_log_color
            detailed_errors_to_client authentication_method
            authenticate_heartbeats authenticate_new_work_conns token
            oidc_issuer oidc_audience oidc_skip_expiry_check
            oidc_skip_issuer_check heartbeat_timeout user_conn_timeout
            allow_ports max_pool_count max_ports_per_client tls_only
            tls_cert_file tls_key_file tls_trusted_ca_file subdomain_host
            tcp_mux tcp_mux_keepalive_interval tcp_keepalive custom_404_page
            udp_packet_size pprof_enable
            nat_hole_analysis_data_reserve_hours""".split()
        s = server("[common]\n" + "".join(f"{k} =\n" for k in keys))
        self.assertEqual([w for w in s.warnings if "unknown" in w], [])
        implemented = set(keys) - set(config.SERVER_NOT_YET)
        self.assertEqual(implemented, set(config.SERVER_KEYS))

    def test_table_matches_model(self):
        """Every implemented server key (frp's and labrelay's own) is a
        ServerConfig attribute, and every attribute is such a key."""
        fields = {f.name for f in attrs.fields(ServerConfig)}
        self.assertEqual(
            fields - {"source", "warnings"},
            set(config.SERVER_KEYS) | set(config.SERVER_OWN_KEYS),
        )

    def test_minimal_example(self):
        """The reference's minimal frps.ini parses as expected."""
        s = server("""\
            # frps.ini
            [common]
            bind_port = 7000
            vhost_http_port = 8080
            subdomain_host = example.com
            token = s3cret
            dashboard_port = 7500
            dashboard_user = admin
            dashboard_pwd = admin
            """)
        self.assertEqual(
            (s.bind_port, s.vhost_http_port, s.subdomain_host, s.token),
            (7000, 8080, "example.com", "s3cret"),
        )
        self.assertEqual(
            (s.dashboard_port, s.dashboard_user, s.dashboard_pwd),
            (7500, "admin", "admin"),
        )
        self.assertEqual(
            s.warnings,
            (
                "frps.ini [common] token: only 6 characters on a public "
                "bind_addr; use at least 16 random ones (openssl rand -hex 16)",
            ),
        )

    def test_seed_configs(self):
        """The frps.ini files of the captured vectors parse as written."""
        for seed in SEEDS:
            path = DATA.child(seed).child("frps.ini").path
            s = load_server_config(path, environ={})
            self.assertEqual(
                (
                    s.bind_addr,
                    s.bind_port,
                    s.vhost_http_port,
                    s.subdomain_host,
                    s.token,
                    s.log_level,
                    s.disable_log_color,
                    s.proxy_bind_addr,
                    s.source,
                    s.warnings,
                ),
                (
                    "127.0.0.1",
                    27000,
                    27080,
                    "web.example.test",
                    "labrelay-vector-token",
                    "trace",
                    True,
                    "127.0.0.1",
                    path,
                    (),
                ),
            )
            self.assertEqual(s.tcp_mux, seed == "plain-mux")
            self.assertEqual(s.heartbeat_timeout, -1 if s.tcp_mux else 90)


class ClientTests(SynchronousTestCase, ErrorAssertions):
    """frpc.ini [common]: defaults, resolutions, validation and warnings."""

    def test_defaults(self):
        """An empty [common] gives frp's defaults."""
        self.assertEqual(client("[common]\n"), ClientConfig())
        c = ClientConfig()
        self.assertEqual(
            (
                c.server_addr,
                c.server_port,
                c.protocol,
                c.pool_count,
                c.tcp_mux,
                c.heartbeat_interval,
                c.heartbeat_timeout,
                c.tcp_mux_keepalive_interval,
                c.login_fail_exit,
                c.dial_server_timeout,
                c.dial_server_keepalive,
                c.tls_enable,
                c.disable_custom_tls_first_byte,
                c.tls_server_name,
                c.log_way,
            ),
            (
                "0.0.0.0",
                7000,
                "tcp",
                1,
                True,
                30,
                -1,
                30,
                True,
                10,
                7200,
                True,
                True,
                "",
                "console",
            ),
        )

    def test_heartbeat_resolution(self):
        """Unset heartbeat_timeout is 90 without tcp_mux; interval stays 30."""
        c = client("[common]\ntcp_mux = false\n")
        self.assertEqual((c.heartbeat_interval, c.heartbeat_timeout), (30, 90))
        c = client("[common]\nheartbeat_timeout = 120\nheartbeat_interval = 0\n")
        self.assertEqual((c.heartbeat_interval, c.heartbeat_timeout), (0, 120))

    def test_heartbeat_timeout_below_interval(self):
        """A timeout shorter than the interval is refused when both are > 0."""
        self.assert_error(
            client,
            "[common]\nheartbeat_timeout = 10\n",
            "frpc.ini: [common] heartbeat_timeout: ",
            "30",
        )
        c = client("[common]\nheartbeat_timeout = 10\nheartbeat_interval = -1\n")
        self.assertEqual(c.heartbeat_timeout, 10)

    def test_protocol(self):
        """Only tcp is implemented; other frp protocols are named as such."""
        for name in ("websocket", "wss", "kcp", "quic"):
            self.assert_error(
                client,
                f"[common]\nprotocol = {name}\n",
                "frpc.ini: [common] protocol: ",
                f"protocol {name} is not supported by labrelay yet",
            )
        self.assert_error(
            client, "[common]\nprotocol = udp\n", "[common] protocol: ", "invalid"
        )

    def test_validation(self):
        """Negative pool_count, port 0 and half a certificate are refused."""
        self.assert_error(
            client, "[common]\npool_count = -1\n", "frpc.ini: [common] pool_count: "
        )
        self.assert_error(
            client, "[common]\nserver_port = 70000\n", "[common] server_port: "
        )
        self.assert_error(
            client, "[common]\ntls_cert_file = c\n", "[common] tls_key_file: "
        )
        self.assert_error(
            client, "[common]\nlog_level = INFO\n", "[common] log_level: "
        )
        self.assert_error(
            client,
            "[common]\nauthentication_method = oidc\n",
            "[common] authentication_method: ",
            "not supported",
        )

    def test_metas_and_values(self):
        """meta_* keys become ordered metas; typed keys are typed."""
        c = client(
            "[common]\nmeta_b = 2\nmeta_a = 1\npool_count = 3\n"
            "login_fail_exit = false\ntls_server_name = relay\n"
        )
        self.assertEqual(c.metas, (("b", "2"), ("a", "1")))
        self.assertEqual(
            (c.pool_count, c.login_fail_exit, c.tls_server_name), (3, False, "relay")
        )

    def test_not_yet_keys(self):
        """Each recognised-but-unimplemented key warns exactly once."""
        c = client(
            "[common]\ndns_server = 1.1.1.1\ndns_server = 8.8.8.8\n"
            "oidc_additional_x = y\nhttp_proxy = socks5://h:1\n"
        )
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [common] dns_server: not supported by labrelay yet; ignored",
                "frpc.ini [common] oidc_additional_x: not supported by labrelay "
                "yet; ignored",
                "frpc.ini [common] http_proxy: not supported by labrelay yet; ignored",
            ),
        )

    def test_unknown_server_and_old_keys(self):
        """Typos, frps keys and obsolete keys each get one warning."""
        c = client("[common]\nserver_adr = x\nbind_port = 1\nprivilege_token = t\n")
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [common] server_adr: unknown key; ignored "
                "(did you mean 'server_addr'?)",
                "frpc.ini [common] bind_port: a frps key, not used here; ignored",
                "frpc.ini [common] privilege_token: obsolete frp key; use token "
                "instead; ignored",
            ),
        )

    def test_tls_files_without_tls(self):
        """TLS files with tls_enable = false are pointed out."""
        c = client("[common]\ntls_enable = false\ntls_trusted_ca_file = ca\n")
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [common] tls_trusted_ca_file: "
                "has no effect when tls_enable is false",
            ),
        )

    def test_every_frp_key_recognised(self):
        """No key of the reference's frpc [common] table is 'unknown'."""
        keys = """server_addr server_port protocol user token
            authentication_method authenticate_heartbeats
            authenticate_new_work_conns oidc_client_id oidc_client_secret
            oidc_audience oidc_scope oidc_token_endpoint_url
            oidc_additional_foo meta_x pool_count tcp_mux
            tcp_mux_keepalive_interval heartbeat_interval heartbeat_timeout
            login_fail_exit dial_server_timeout dial_server_keepalive
            connect_server_local_ip http_proxy dns_server nat_hole_stun_server
            tls_enable tls_cert_file tls_key_file tls_trusted_ca_file
            tls_server_name disable_custom_tls_first_byte
            quic_keepalive_period quic_max_idle_timeout
            quic_max_incoming_streams udp_packet_size start includes
            admin_addr admin_port admin_user admin_pwd assets_dir
            pprof_enable log_file log_level log_max_days
            disable_log_color log_way""".split()
        c = client("[common]\n" + "".join(f"{k} =\n" for k in keys))
        self.assertEqual([w for w in c.warnings if "unknown" in w], [])
        fields = {f.name for f in attrs.fields(ClientConfig)}
        self.assertEqual(
            fields - {"metas", "proxies", "visitors", "source", "warnings"},
            set(config.CLIENT_KEYS) | set(config.CLIENT_OWN_KEYS),
        )

    def test_user_prefix(self):
        """With user set, proxy wire names are ``user.section``."""
        c = client("[common]\nuser = alice\n[ssh]\nlocal_port = 22\n")
        self.assertEqual(
            (c.proxies[0].name, c.proxies[0].section), ("alice.ssh", "ssh")
        )

    def test_start(self):
        """start keeps only the named sections (without the user prefix)."""
        c = client(
            "[common]\nuser = u\nstart = b, nope\n[a]\nlocal_port = 1\n"
            "[b]\nlocal_port = 2\n[c]\ntype = bogus\n"
        )
        self.assertEqual([p.name for p in c.proxies], ["u.b"])
        self.assertEqual(
            c.warnings, ("frpc.ini [common] start: no section named 'nope'",)
        )

    def test_minimal_example(self):
        """The reference's minimal frpc.ini parses as expected."""
        c = client(
            """\
            # frpc.ini
            [common]
            server_addr = {{ .Envs.FRPS_HOST }}
            server_port = 7000
            token = s3cret
            admin_port = 7400

            [ssh]
            type = tcp
            local_port = 22
            remote_port = 6000

            [web]
            type = http
            local_port = 80
            subdomain = web
            locations = /,/api
            header_X-From-Where = frp
            """,
            environ={"FRPS_HOST": "frps.example"},
        )
        self.assertEqual((c.server_addr, c.token), ("frps.example", "s3cret"))
        ssh, web = c.proxies
        self.assertEqual((ssh.type, ssh.local_port, ssh.remote_port), ("tcp", 22, 6000))
        self.assertEqual(
            (web.type, web.subdomain, web.locations, web.headers),
            ("http", "web", ("/", "/api"), (("X-From-Where", "frp"),)),
        )
        self.assertEqual((c.admin_addr, c.admin_port), ("127.0.0.1", 7400))
        self.assertEqual(c.warnings, ())

    def test_seed_configs(self):
        """The frpc.ini files of the captured vectors parse as written."""
        for seed in SEEDS:
            c = load_client_config(DATA.child(seed).child("frpc.ini").path, environ={})
            self.assertEqual(
                (
                    c.server_addr,
                    c.server_port,
                    c.tls_enable,
                    c.login_fail_exit,
                    c.log_level,
                    c.warnings,
                ),
                ("127.0.0.1", 27001, False, True, "trace", ()),
            )
            self.assertEqual(c.tcp_mux, seed == "plain-mux")
            ssh, enc, web = c.proxies
            self.assertEqual(
                ssh, ProxyConfig(name="ssh", local_port=27777, remote_port=27022)
            )
            self.assertEqual(
                (enc.use_encryption, enc.use_compression, enc.remote_port),
                (True, True, 27023),
            )
            self.assertEqual(
                web,
                ProxyConfig(
                    name="jupyter", type="http", local_port=27888, subdomain="jupyter"
                ),
            )


class ProxyTests(SynchronousTestCase, ErrorAssertions):
    """Proxy sections: types, keys, validation and warnings."""

    def test_tcp(self):
        """A tcp proxy takes its keys, with local_ip defaulting to loopback."""
        p = proxy(
            "[ssh]\nlocal_port = 22\nremote_port = 6000\n"
            "use_encryption\nuse_compression = yes\nmeta_k = v\n"
        )
        self.assertEqual(
            p,
            ProxyConfig(
                name="ssh",
                section="ssh",
                type="tcp",
                local_ip="127.0.0.1",
                local_port=22,
                remote_port=6000,
                use_encryption=True,
                use_compression=True,
                metas=(("k", "v"),),
            ),
        )

    def test_local_port_required(self):
        """local_port is required and must be > 0."""
        for body in (
            "[ssh]\n",
            "[ssh]\nlocal_port = 0\n",
            "[web]\ntype = http\nsubdomain = w\n",
        ):
            self.assert_error(
                client, "[common]\n" + body, "frpc.ini: [", "] local_port: ", "required"
            )
        self.assert_error(
            client,
            "[common]\n[ssh]\nlocal_port = 1\nremote_port = 65536\n",
            "[ssh] remote_port: ",
        )

    def test_http(self):
        """An http proxy takes its routing keys; headers keep their case."""
        p = proxy(
            "[web]\ntype = http\nlocal_port = 80\n"
            "custom_domains = a.example, *.b.example\nlocations = /api\n"
            "http_user = u\nhttp_pwd = p\nhost_header_rewrite = h\n"
            "header_X-Real = 1\nroute_by_http_user = u\n"
        )
        self.assertEqual(
            (
                p.custom_domains,
                p.locations,
                p.http_user,
                p.http_pwd,
                p.host_header_rewrite,
                p.route_by_http_user,
                p.headers,
            ),
            (
                ("a.example", "*.b.example"),
                ("/api",),
                "u",
                "p",
                "h",
                "u",
                (("X-Real", "1"),),
            ),
        )

    def test_http_validation(self):
        """http needs custom_domains or subdomain; subdomain has no . or *."""
        self.assert_error(
            client,
            "[common]\n[web]\ntype = http\nlocal_port = 80\n",
            "frpc.ini: [web] custom_domains: ",
            "subdomain",
        )
        for bad in ("a.b", "*"):
            self.assert_error(
                client,
                f"[common]\n[web]\ntype = http\nlocal_port = 80\nsubdomain = {bad}\n",
                "frpc.ini: [web] subdomain: ",
            )

    def test_unsupported_types_skipped(self):
        """sudp/xtcp warn once and are left out."""
        for ptype in ("sudp", "xtcp"):
            c = client(f"[common]\n[p]\ntype = {ptype}\nsk = x\n")
            self.assertEqual(c.proxies, ())
            self.assertEqual(
                c.warnings,
                (
                    f"frpc.ini [p]: proxy type {ptype} is not supported by "
                    f"labrelay yet; section skipped",
                ),
            )

    def test_unknown_type(self):
        """A type frp does not know is an error naming the key."""
        self.assert_error(
            client, "[common]\n[p]\ntype = TCP\n", "frpc.ini: [p] type: ", "'TCP'"
        )

    def test_visitors_and_roles(self):
        """Visitor sections of types labrelay does not run are skipped with
        one warning; bad roles refused."""
        c = client(
            "[common]\n[v]\nrole = visitor\ntype = xtcp\n"
            "server_name = s\nbind_port = 9000\n"
        )
        self.assertEqual(
            (c.proxies, c.visitors, c.warnings),
            (
                (),
                (),
                (
                    "frpc.ini [v]: visitor type xtcp is not supported by labrelay "
                    "yet; section skipped",
                ),
            ),
        )
        self.assertEqual(proxy("[a]\nrole = server\nlocal_port = 1\n").name, "a")
        self.assert_error(
            client, "[common]\n[a]\nrole = client\n", "frpc.ini: [a] role: "
        )

    def test_plugin_skipped(self):
        """A proxy served by a client plugin is skipped with one warning."""
        c = client("[common]\n[s]\nplugin = socks5\nplugin_user = u\n")
        self.assertEqual(
            (c.proxies, c.warnings),
            (
                (),
                (
                    "frpc.ini [s]: plugin socks5 is not supported by labrelay yet; "
                    "section skipped",
                ),
            ),
        )

    def test_key_warnings(self):
        """Unimplemented, misplaced, ignored and unknown keys warn once each."""
        c = client(
            "[common]\n[a]\nlocal_port = 1\ngroup = g\n"
            "health_check_type = tcp\nhealth_check_type = tcp\n"
            "custom_domains = x\nname = other\nlocal_prot = 2\n"
            "header_X = 1\n"
        )
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [a] group: not supported by labrelay yet; ignored",
                "frpc.ini [a] health_check_type: not supported by labrelay yet; "
                "ignored",
                "frpc.ini [a] custom_domains: not used by tcp proxies; ignored",
                "frpc.ini [a] name: ignored; the section name is the proxy name",
                "frpc.ini [a] local_prot: unknown key; ignored "
                "(did you mean 'local_port'?)",
                "frpc.ini [a] header_X: not used by tcp proxies; ignored",
            ),
        )
        self.assert_error(
            client,
            "[common]\n[a]\nlocal_port = 1\nhealth_check_interval_s = soon\n",
            "[a] health_check_interval_s: ",
        )

    def test_remote_port_on_http(self):
        """remote_port on an http proxy is pointed out and ignored."""
        c = client(
            "[common]\n[w]\ntype = http\nlocal_port = 1\n"
            "subdomain = w\nremote_port = 80\n"
        )
        self.assertEqual(c.proxies[0].remote_port, 0)
        self.assertEqual(
            c.warnings, ("frpc.ini [w] remote_port: not used by http proxies; ignored",)
        )


class RangeTests(SynchronousTestCase, ErrorAssertions):
    """``range:`` sections expand to numbered proxies."""

    def test_expansion(self):
        """Names are prefix_<index>, ports are paired by position."""
        c = client(
            "[common]\nuser = u\n[range: tcp_port ]\n"
            "local_port = 6010-6011,6022\nremote_port = 7000,7005-7006\n"
            "use_encryption = true\nbogus = 1\n[after]\nlocal_port = 5\n"
        )
        self.assertEqual(
            [
                (p.name, p.section, p.local_port, p.remote_port, p.use_encryption)
                for p in c.proxies
            ],
            [
                ("u.tcp_port_0", "tcp_port_0", 6010, 7000, True),
                ("u.tcp_port_1", "tcp_port_1", 6011, 7005, True),
                ("u.tcp_port_2", "tcp_port_2", 6022, 7006, True),
                ("u.after", "after", 5, 0, False),
            ],
        )
        self.assertEqual(
            c.warnings, ("frpc.ini [range: tcp_port ] bogus: unknown key; ignored",)
        )

    def test_start_uses_generated_names(self):
        """start selects generated proxies by their generated names."""
        c = client(
            "[common]\nstart = r_1\n[range:r]\nlocal_port = 1-3\nremote_port = 11-13\n"
        )
        self.assertEqual([(p.name, p.local_port) for p in c.proxies], [("r_1", 2)])

    def test_count_mismatch(self):
        """local_port and remote_port must list as many ports."""
        self.assert_error(
            client,
            "[common]\n[range:r]\nlocal_port = 1-3\nremote_port = 11-12\n",
            "frpc.ini: [range:r] remote_port: ",
            "2",
            "3",
        )

    def test_bad_ranges(self):
        """Missing or malformed range values are errors naming the key."""
        self.assert_error(
            client,
            "[common]\n[range:r]\nlocal_port = 1-3\n",
            "frpc.ini: [range:r] remote_port: ",
        )
        for bad in ("3-1", "x", "1-2-3", "1,", "99999"):
            self.assert_error(
                client,
                f"[common]\n[range:r]\nlocal_port = {bad}\nremote_port = 1\n",
                "frpc.ini: [range:r] local_port: ",
            )

    def test_clash(self):
        """A generated name that is already a section is refused."""
        self.assert_error(
            client,
            "[common]\n[r_0]\nlocal_port = 1\n"
            "[range:r]\nlocal_port = 1\nremote_port = 2\n",
            "frpc.ini: [range:r] ",
            "'r_0'",
        )


class IncludeTests(SynchronousTestCase, ErrorAssertions):
    """``includes`` appends the sections of matching files."""

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.child("conf.d").makedirs()
        self.root.child("conf.d").child("sub.ini").makedirs()

    def write(self, name: str, text: str) -> FilePath:
        path = self.root.preauthChild(name)
        path.setContent(dedent(text).encode("utf-8"))
        return path

    def test_glob_relative_to_main_file(self):
        """Relative patterns are resolved from the main file's directory."""
        self.write("conf.d/b.ini", "[b]\nlocal_port = {{ .Envs.PB }}\n")
        self.write("conf.d/a.ini", "[a]\nlocal_port = 1\n")
        self.write("conf.d/c.txt", "[c]\nlocal_port = 3\n")
        main = self.write(
            "frpc.ini", "[common]\nincludes = ./conf.d/*.ini\n[main]\nlocal_port = 9\n"
        )
        c = load_client_config(main.path, environ={"PB": "2"})
        self.assertEqual(
            [(p.name, p.local_port) for p in c.proxies],
            [("main", 9), ("a", 1), ("b", 2)],
        )
        self.assertEqual(c.includes, ("./conf.d/*.ini",))

    def test_common_ignored_and_sections_merged(self):
        """An included [common] is ignored; repeated sections merge."""
        extra = self.write(
            "conf.d/x.ini", "[common]\ntoken = evil\n[web]\nlocal_port = 8080\n"
        )
        c = client(
            "[common]\ntoken = good\nincludes = conf.d/x.ini\n"
            "[web]\nremote_port = 80\n",
            base_dir=self.root.path,
        )
        self.assertEqual(c.token, "good")
        self.assertEqual(
            [(p.name, p.local_port, p.remote_port) for p in c.proxies],
            [("web", 8080, 80)],
        )
        self.assertEqual(
            c.warnings,
            (f"{extra.path} [common]: [common] of an included file is ignored",),
        )

    def test_absolute_pattern_and_no_match(self):
        """Absolute patterns work; a pattern matching nothing warns."""
        self.write("conf.d/one.ini", "[one]\nlocal_port = 1\n")
        pattern = self.root.child("conf.d").child("o*.ini").path
        c = client(f"[common]\nincludes = {pattern}, {self.root.path}/z*\n")
        self.assertEqual([p.name for p in c.proxies], ["one"])
        self.assertEqual(len(c.warnings), 1)
        self.assertIn("[common] includes: ", c.warnings[0])

    def test_missing_directory(self):
        """A pattern whose directory does not exist is an error naming the
        directory as one absolute path (not ``././nowhere``)."""
        where = os.path.join(self.root.path, "nowhere")
        self.assert_error(
            client,
            "[common]\nincludes = ./nowhere/*.ini\n",
            "frpc.ini: [common] includes: ",
            f"directory {where!r} of './nowhere/*.ini' does not exist",
            base_dir=self.root.path + "/.",
        )

    def test_errors_name_included_file(self):
        """Errors in an included file name that file."""
        bad = self.write("conf.d/bad.ini", "[x]\nlocal_port = nope\n")
        self.assert_error(
            client,
            "[common]\nincludes = conf.d/bad.ini\n",
            f"{bad.path}: [x] local_port: ",
            base_dir=self.root.path,
        )
        self.write("conf.d/tpl.ini", "[y]\nlocal_port = {{ printf }}\n")
        self.assert_error(
            client,
            "[common]\nincludes = conf.d/tpl.ini\n",
            "tpl.ini: line 2: ",
            base_dir=self.root.path,
        )


class LoadTests(SynchronousTestCase, ErrorAssertions):
    """load_* read files and report unreadable ones as ConfigError."""

    def test_unreadable(self):
        """A missing file is a ConfigError naming it."""
        path = self.mktemp()
        self.assert_error(load_server_config, path, path, "cannot read")
        self.assert_error(load_client_config, path, path, "cannot read")

    def test_not_utf8(self):
        """Bytes that are not UTF-8 are a ConfigError."""
        path = FilePath(self.mktemp())
        path.setContent(b"[common]\ntoken = \xff\n")
        self.assert_error(load_client_config, path.path, "UTF-8")

    def test_filepath_accepted(self):
        """A FilePath works as well as a str path."""
        path = FilePath(self.mktemp())
        path.setContent(b"[common]\nbind_port = 7001\n")
        self.assertEqual(load_server_config(path).bind_port, 7001)


class PortSetTests(SynchronousTestCase):
    """PortSet and parse_port_ranges."""

    def test_parse(self):
        """Ranges are kept as written; iteration is ascending and unique."""
        ports = parse_port_ranges(" 10-12, 11 ,5 ")
        self.assertEqual(ports.ranges, ((10, 12), (11, 11), (5, 5)))
        self.assertEqual(list(ports), [5, 10, 11, 12])
        self.assertEqual(len(ports), 4)
        self.assertEqual((5 in ports, 9 in ports, "5" in ports), (True, False, False))
        self.assertFalse(ports.is_all())

    def test_all(self):
        """The empty set means every port 1-65535."""
        everything = parse_port_ranges("")
        self.assertEqual(everything, PortSet())
        self.assertTrue(everything.is_all())
        self.assertEqual(len(everything), 65535)
        self.assertIn(65535, everything)
        self.assertNotIn(0, everything)
        self.assertTrue(parse_port_ranges("1-30000,30001-65535").is_all())

    def test_errors(self):
        """Malformed lists raise ValueError with the offending item."""
        for bad in ("1-", "-1", "a", "5-4", "1-2-3", "65536", "1,,2"):
            error = self.assertRaises(ValueError, parse_port_ranges, bad)
            self.assertTrue(str(error))


_FRAGMENTS = st.sampled_from(
    [
        "[common]",
        "[range:r]",
        "[web]",
        "[a.b]",
        "type = http",
        "type = tcp",
        "local_port = 1-3",
        "remote_port = 5",
        "start = a",
        "user = u",
        "includes = *.ini",
        "subdomain = x",
        "tcp_mux",
        "heartbeat_timeout = 1",
        '"""',
        "\\",
        "{{ .Envs.X }}",
        "{{",
        "}}",
        "role = visitor",
        "allow_ports = 1-2",
        "meta_a = b",
        "= x",
        "[",
        "bind_port = 0x10",
    ]
)
_LINES = st.lists(
    st.one_of(
        _FRAGMENTS,
        st.text(alphabet=st.characters(blacklist_characters="/\x00"), max_size=30),
    ),
    max_size=12,
)


class PropertyTests(SynchronousTestCase):
    """Arbitrary text never raises anything but ConfigError."""

    def setUp(self):
        self.base = FilePath(self.mktemp())
        self.base.makedirs()

    @settings(max_examples=200, deadline=None)
    @given(_LINES)
    def test_client_only_config_errors(self, lines):
        """parse_client_config either succeeds or raises ConfigError."""
        try:
            c = parse_client_config(
                "\n".join(lines), environ={"X": "1"}, base_dir=self.base.path
            )
        except ConfigError as e:
            self.assertNotIn("\n", str(e))
        else:
            self.assertIsInstance(c, ClientConfig)

    @settings(max_examples=200, deadline=None)
    @given(_LINES)
    def test_server_only_config_errors(self, lines):
        """parse_server_config either succeeds or raises ConfigError."""
        try:
            s = parse_server_config("\n".join(lines), environ={})
        except ConfigError as e:
            self.assertNotIn("\n", str(e))
        else:
            self.assertIsInstance(s, ServerConfig)


class WarningTests(SynchronousTestCase):
    """Warnings a new user sees: suggestions, silence at defaults, and
    warnings kept when an error follows."""

    def test_did_you_mean(self):
        c = client("[common]\nserver_prot = 7000\n")
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [common] server_prot: unknown key; ignored "
                "(did you mean 'server_port'?)",
            ),
        )

    def test_no_suggestion_for_far_names(self):
        c = client("[common]\nzebra = 1\n")
        self.assertEqual(c.warnings, ("frpc.ini [common] zebra: unknown key; ignored",))

    def test_not_yet_keys_at_default_are_silent(self):
        s = server(
            "[common]\nbind_addr = 127.0.0.1\n"
            "pprof_enable = false\noidc_issuer =\n"
            "udp_packet_size = 1500\nquic_keepalive_period = 10\n"
            "kcp_bind_port = 0\n"
        )
        self.assertEqual(s.warnings, ())
        c = client(
            "[common]\n[p]\nlocal_port = 22\nhealth_check_type =\n"
            "health_check_interval_s = 10\nbandwidth_limit_mode = "
            "client\n"
        )
        self.assertEqual(c.warnings, ())

    def test_not_yet_keys_set_still_warn(self):
        s = server(
            "[common]\nbind_addr = 127.0.0.1\npprof_enable = true\n"
            "kcp_bind_port = 7001\n"
        )
        self.assertEqual(
            s.warnings,
            (
                "frps.ini [common] pprof_enable: not supported by labrelay yet; "
                "ignored",
                "frps.ini [common] kcp_bind_port: not supported by labrelay "
                "yet; ignored",
            ),
        )

    def test_error_carries_earlier_and_later_warnings(self):
        """A bad value does not hide the warnings about the other keys,
        written before or after it."""
        error = self.assertRaises(
            ConfigError,
            server,
            "[common]\nbind_prot = 1\nbind_port = abc\ndashbord_port = 2\n",
        )
        self.assertIn("bind_port", str(error))
        self.assertEqual(
            error.warnings,
            (
                "frps.ini [common] bind_prot: unknown key; ignored "
                "(did you mean 'bind_port'?)",
                "frps.ini [common] dashbord_port: unknown key; ignored "
                "(did you mean 'dashboard_port'?)",
            ),
        )

    def test_error_after_common_keeps_its_warnings(self):
        error = self.assertRaises(
            ConfigError, client, "[common]\nserver_adr = x\n[p]\ntype = tcp\n"
        )
        self.assertIn("local_port", str(error))
        self.assertEqual(len(error.warnings), 1)
        self.assertIn("server_adr", error.warnings[0])

    def test_token_strength_on_public_bind(self):
        long_token = "k" * 16
        for bind in ("0.0.0.0", "", "192.0.2.1", "::"):
            text = f"[common]\nbind_addr = {bind}\n" if bind else "[common]\n"
            self.assertEqual(len(server(text).warnings), 1, bind)
            self.assertIn("token: empty", server(text).warnings[0])
            self.assertIn(
                "only 5 characters", server(text + "token = short\n").warnings[0]
            )
            self.assertEqual(server(text + f"token = {long_token}\n").warnings, ())
        for bind in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"):
            self.assertEqual(
                server(f"[common]\nbind_addr = {bind}\n").warnings, (), bind
            )
