"""
frp's v1 config files (TOML, YAML, JSON) read into the same models as the
INI files: frp's own reference files, every key of the table, types,
ranges, strictness, syntax errors with lines, templates, includes, start
and labrelay's own keys.
"""

import json
import os
import re
import textwrap

import attrs
import yaml
from twisted.trial import unittest

from labrelay import config
from labrelay.config import (
    ConfigError,
    load_client_config,
    load_server_config,
    parse_client_config,
    parse_server_config,
)
from labrelay.config.ini import PortSet
from labrelay.config.proxy import ProxyConfig
from labrelay.config.v1keys import (
    CLIENT_V1_KEYS,
    PROXY_V1_KEYS,
    SERVER_V1_KEYS,
    camel_case,
    v1_kind,
)
from labrelay.config.v1text import config_format, tomllib

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "frp-v1")
ENV = {"TOKEN": "0123456789abcdef0123", "PORT": "7100"}


def server(text, source="frps.toml", **kw):
    return parse_server_config(textwrap.dedent(text), source, ENV, **kw)


def client(text, source="frpc.toml", **kw):
    return parse_client_config(textwrap.dedent(text), source, ENV, **kw)


def model_values(model):
    """A model's values without where it came from."""
    values = attrs.asdict(model, recurse=False)
    for key in ("source", "warnings"):
        values.pop(key)
    return values


class FormatTests(unittest.TestCase):
    def test_by_extension(self):
        """The extension picks the format, as frp; anything else is INI."""
        for path, fmt in (
            ("frps.toml", "toml"),
            ("/etc/frp/FRPC.TOML", "toml"),
            ("a.yaml", "yaml"),
            ("a.yml", "yaml"),
            ("a.json", "json"),
            ("frpc.ini", "ini"),
            ("frpc.conf", "ini"),
            ("frpc", "ini"),
        ):
            self.assertEqual(config_format(path), fmt, path)

    def test_model_says_format(self):
        """The models say the format they were read from."""
        self.assertEqual(server("bindPort = 7000\n").format, "toml")
        self.assertEqual(server("bindPort: 7000\n", "frps.yml").format, "yaml")
        self.assertEqual(client('{"serverPort": 7000}', "frpc.json").format, "json")
        self.assertEqual(
            parse_server_config("[common]\nbind_port = 7000\n", "frps.ini").format,
            "ini",
        )


class ReferenceFileTests(unittest.TestCase):
    """frp's own full example files load with the expected warnings."""

    def test_frps_v0_70(self):
        path = os.path.join(DATA, "frps_full_example-v0.70.0.toml")
        s = load_server_config(path)
        self.assertEqual(
            [w[len(path) + 2 :] for w in s.warnings],
            [
                'httpPlugins[0] "user-manager" (line 159): server plugins are '
                "not supported by labrelay yet; ignored",
                'httpPlugins[1] "port-manager" (line 165): server plugins are '
                "not supported by labrelay yet; ignored",
                "kcpBindPort (line 11): not supported by labrelay yet; ignored",
                "auth.token (line 106): only 8 characters on a public bindAddr; "
                "use at least 16 random ones (openssl rand -hex 16)",
            ],
        )
        self.assertEqual(
            (s.bind_port, s.vhost_http_port, s.dashboard_port, s.dashboard_pwd),
            (7000, 80, 7500, "admin"),
        )
        self.assertEqual(
            s.allow_ports.ranges,
            ((2000, 3000), (3001, 3001), (3003, 3003), (4000, 50000)),
        )
        self.assertEqual(
            (s.log_file, s.log_way, s.enable_prometheus), ("./frps.log", "file", True)
        )
        self.assertEqual(s.subdomain_host, "frps.com")
        self.assertEqual(s.max_pool_count, 5)

    def test_frpc_v0_70(self):
        path = os.path.join(DATA, "frpc_full_example-v0.70.0.toml")
        c = load_client_config(path)
        self.assertEqual(
            [w[len(path) + 2 :] for w in c.warnings],
            [
                "clientID (line 4): not supported by labrelay yet; ignored",
                'proxies[0] "ssh" annotations (line 218): not supported by '
                "labrelay yet; ignored",
                'proxies[3] "web01" responseHeaders.set (line 256): not '
                "supported by labrelay yet; ignored",
                'proxies[3] "web01" healthCheck.httpHeaders (line 265): not '
                "supported by labrelay yet; ignored",
                'visitors[1] "p2p_tcp_visitor" (line 435): xtcp visitors are not '
                "supported by labrelay yet; skipped",
                'visitors[2] "vnet-visitor" (line 461): visitor plugin virtual_net '
                "is not supported by labrelay yet; skipped",
                'proxies[0] "ssh" transport.bandwidthLimit (line 191): not '
                "supported by labrelay yet; ignored",
                'proxies[0] "ssh" loadBalancer.group (line 201): not supported '
                "by labrelay yet; ignored",
                'proxies[0] "ssh" loadBalancer.groupKey (line 203): not '
                "supported by labrelay yet; ignored",
                'proxies[0] "ssh" healthCheck.type (line 206): not supported by '
                "labrelay yet; ignored",
                'proxies[0] "ssh" healthCheck.maxFailed (line 210): not '
                "supported by labrelay yet; ignored",
                'proxies[3] "web01" healthCheck.type (line 257): not supported '
                "by labrelay yet; ignored",
                'proxies[3] "web01" healthCheck.path (line 260): not supported '
                "by labrelay yet; ignored",
                'proxies[3] "web01" healthCheck.maxFailed (line 262): not '
                "supported by labrelay yet; ignored",
                'proxies[4] "web02" transport.proxyProtocolVersion (line 280): '
                "not supported by labrelay yet; ignored",
                'proxies[6] "plugin_unix_domain_socket" (line 291): plugin '
                "unix_domain_socket is not supported by labrelay yet; skipped",
                'proxies[7] "plugin_http_proxy" (line 301): plugin http_proxy '
                "is not supported by labrelay yet; skipped",
                'proxies[8] "plugin_socks5" (line 310): plugin socks5 is not '
                "supported by labrelay yet; skipped",
                'proxies[9] "plugin_static_file" (line 319): plugin static_file '
                "is not supported by labrelay yet; skipped",
                'proxies[10] "plugin_https2http" (line 330): plugin https2http '
                "is not supported by labrelay yet; skipped",
                'proxies[11] "plugin_https2https" (line 342): plugin https2https '
                "is not supported by labrelay yet; skipped",
                'proxies[12] "plugin_http2https" (line 354): plugin http2https '
                "is not supported by labrelay yet; skipped",
                'proxies[13] "plugin_http2http" (line 364): plugin http2http '
                "is not supported by labrelay yet; skipped",
                'proxies[14] "plugin_tls2raw" (line 374): plugin tls2raw is not '
                "supported by labrelay yet; skipped",
                'proxies[16] "p2p_tcp" (line 397): proxy type xtcp is not '
                "supported by labrelay yet; skipped",
                'proxies[17] "vnet-server" (line 415): plugin virtual_net is not '
                "supported by labrelay yet; skipped",
            ],
        )
        self.assertEqual(
            [p.name for p in c.proxies],
            [
                "your_name.ssh",
                "your_name.ssh_random",
                "your_name.dns",
                "your_name.web01",
                "your_name.web02",
                "your_name.tcpmuxhttpconnect",
                "your_name.secret_tcp",
            ],
        )
        ssh, _, _dns, web, web02, tcpmux, secret = c.proxies
        self.assertEqual((web02.type, tcpmux.type), ("https", "tcpmux"))
        self.assertEqual(tcpmux.multiplexer, "httpconnect")
        self.assertEqual((secret.sk, secret.allow_users), ("abcdefg", ("*",)))
        (visitor,) = c.visitors
        self.assertEqual(
            (visitor.name, visitor.server_name, visitor.sk, visitor.bind_port),
            ("secret_tcp_visitor", "secret_tcp", "abcdefg", 9000),
        )
        self.assertEqual(visitor.target(c.user), "your_name.secret_tcp")
        self.assertEqual((ssh.local_port, ssh.remote_port), (22, 6001))
        self.assertEqual(ssh.metas, (("var1", "abc"), ("var2", "123")))
        self.assertEqual(web.http_pwd, "admin")
        self.assertEqual(web.headers, (("x-from-where", "frp"),))
        self.assertEqual(web.locations, ("/", "/pic"))
        self.assertEqual((c.admin_port, c.pool_count, c.user), (7400, 5, "your_name"))
        self.assertEqual(c.metas, (("var1", "abc"), ("var2", "123")))

    def test_commented_out_keys(self):
        """The keys frp's v0.70 examples show commented out are recognised
        too: with every such line that is valid TOML uncommented (the
        first of each key), both files load in strict mode."""
        path = os.path.join(DATA, "frps_full_example-v0.70.0.toml")
        with open(path) as f:
            s = server(_uncommented(f.read()))
        self.assertEqual(
            [
                w
                for w in s.warnings
                if "not supported by labrelay yet; ignored" in w
                and "httpPlugins" not in w
            ],
            [
                f"frps.toml: {key} (line {line}): not supported by labrelay yet; ignored"
                for key, line in (
                    ("auth.tokenSource.type", 110),
                    ("auth.tokenSource.file.path", 111),
                    ("sshTunnelGateway.bindPort", 154),
                    ("sshTunnelGateway.privateKeyFile", 155),
                    ("sshTunnelGateway.authorizedKeysFile", 157),
                    ("kcpBindPort", 11),
                    ("quicBindPort", 15),
                )
            ],
        )
        self.assertTrue(s.dashboard_tls_mode)
        path = os.path.join(DATA, "frpc_full_example-v0.70.0.toml")
        with open(path) as f:
            text = _uncommented(f.read())
        # frp itself refuses the includes of a directory that is not there
        text = text.replace('includes = ["./confd/*.ini"]', "")
        c = client(text)
        self.assertEqual(
            [w for w in c.warnings if "proxies[" not in w],
            [
                f"frpc.toml: {key} (line {line}): not supported by labrelay yet; ignored"
                for key, line in (
                    ("clientID", 4),
                    ("auth.tokenSource.type", 39),
                    ("auth.tokenSource.file.path", 40),
                    ("auth.oidc.trustedCaFile", 63),
                    ("auth.oidc.insecureSkipVerify", 67),
                    ("auth.oidc.proxyURL", 72),
                    ("featureGates", 168),
                    ("virtualNet.address", 172),
                    ("auth.oidc.additionalEndpointParams.audience", 57),
                    ("auth.oidc.additionalEndpointParams.var1", 58),
                    ("webServer.assetsDir", 80),
                    ("transport.proxyURL", 116),
                    ("dnsServer", 146),
                )
            ],
        )
        # start = ["ssh", "dns"] is among them
        self.assertEqual(
            [p.name for p in c.proxies], ["your_name.ssh", "your_name.dns"]
        )

    def test_frpc_v0_52(self):
        """v0.52's example (conf/frpc.toml then) loads: its keys are a
        subset of today's."""
        path = os.path.join(DATA, "frpc-v0.52.0.toml")
        c = load_client_config(path)
        self.assertEqual(
            [p.name for p in c.proxies],
            [
                "your_name.ssh",
                "your_name.ssh_random",
                "your_name.dns",
                "your_name.web01",
                "your_name.web02",
                "your_name.tcpmuxhttpconnect",
                "your_name.secret_tcp",
            ],
        )
        self.assertFalse([w for w in c.warnings if "unknown" in w])
        self.assertEqual(len(c.warnings), 18)  # udp, stcp, https, tcpmux load
        self.assertEqual(
            [w for w in c.warnings if "visitors[" in w],
            [
                f'{path}: visitors[1] "p2p_tcp_visitor" (line 343): xtcp visitors '
                "are not supported by labrelay yet; skipped",
            ],
        )
        self.assertEqual([v.name for v in c.visitors], ["secret_tcp_visitor"])

    def test_frps_v0_52_syntax_error(self):
        """v0.52's frps example has ``log.level = info`` unquoted: frp
        refuses it at line 86, and so does labrelay."""
        path = os.path.join(DATA, "frps-v0.52.0.toml")
        e = self.assertRaises(ConfigError, load_server_config, path)
        self.assertTrue(
            str(e).startswith(f"{path}: line 86, column 16: TOML syntax error"), str(e)
        )

    def test_frps_v0_53_strict(self):
        """v0.53's frps example has a top-level ``tls.force``: an unknown
        key in strict mode (as frp), a warning without."""
        path = os.path.join(DATA, "frps_full_example-v0.53.0.toml")
        e = self.assertRaises(ConfigError, load_server_config, path)
        self.assertEqual(
            str(e),
            f"{path}: tls (line 44): unknown key (did you mean "
            f"'transport.tls.force' for 'tls.force'?)",
        )
        s = load_server_config(path, strict=False)
        self.assertIn(
            f"{path}: tls (line 44): unknown key (did you mean "
            f"'transport.tls.force' for 'tls.force'?); ignored",
            s.warnings,
        )


_COMMENTED_KEY = re.compile(r"^#\s?([A-Za-z][\w.]*\s*=\s*.+)$")


def _uncommented(text):
    """*text* with each commented-out ``key = value`` line that is valid
    TOML on its own uncommented, unless its table already sets the key."""
    lines, seen, table = [], set(), ""
    for line in text.split("\n"):
        if line.startswith("["):
            table = line
        commented = _COMMENTED_KEY.match(line)
        if commented:
            candidate = commented.group(1)
            key = (table, candidate.split("=")[0].strip())
            try:
                tomllib.loads(candidate)
            except tomllib.TOMLDecodeError:
                candidate = None
            if candidate is not None and key not in seen:
                seen.add(key)
                line = candidate
        elif "=" in line and not line.startswith("#"):
            seen.add((table, line.split("=")[0].strip()))
        lines.append(line)
    return "\n".join(lines)


SERVER_TOML = """\
bindAddr = "127.0.0.1"
bindPort = 7001
vhostHTTPPort = 8080
subDomainHost = "example.test"
allowPorts = [{ start = 6000, end = 6100 }, { single = 7002 }]
auth.token = "0123456789abcdef"
auth.additionalScopes = ["HeartBeats"]
webServer.port = 7500
webServer.user = "admin"
webServer.password = "secret"
transport.tcpMux = false
transport.tls.force = true
log.to = "/var/log/frps.log"
log.level = "debug"
labrelay.maxUnauthenticatedPerSource = 8
labrelay.dashboardAllowedHosts = ["relay.example.test"]
"""

CLIENT_TOML = """\
serverAddr = "relay.example.test"
serverPort = 7001
user = "alice"
auth.token = "0123456789abcdef"
loginFailExit = false
metadatas.team = "ml"
webServer.port = 7400
webServer.password = "pw"
transport.poolCount = 2
transport.tls.enable = false
start = ["ssh", "web"]

[[proxies]]
name = "ssh"
type = "tcp"
localPort = 22
remotePort = 6022
transport.useEncryption = true

[[proxies]]
name = "web"
type = "http"
localPort = 8888
subdomain = "web"
customDomains = ["a.example.test", "b.example.test"]
locations = ["/", "/api"]
httpUser = "u"
httpPassword = "p"
requestHeaders.set.x-from = "relay"
metadatas.owner = "alice"

[[proxies]]
name = "off"
type = "tcp"
localPort = 23
"""


class SameInEveryFormatTests(unittest.TestCase):
    def _formats(self, toml_text):
        data = tomllib.loads(toml_text)
        return {
            "toml": toml_text,
            "yaml": yaml.safe_dump(data, sort_keys=False),
            "json": json.dumps(data, indent=1),
        }

    def test_server(self):
        models = {
            fmt: model_values(server(text, f"frps.{fmt}"))
            for fmt, text in self._formats(SERVER_TOML).items()
        }
        self.assertEqual(models["toml"], models["yaml"])
        self.assertEqual(models["toml"], models["json"])
        s = server(SERVER_TOML)
        self.assertEqual(s.warnings, ())
        self.assertEqual(
            (s.bind_addr, s.bind_port, s.vhost_http_port, s.subdomain_host),
            ("127.0.0.1", 7001, 8080, "example.test"),
        )
        self.assertEqual(s.allow_ports, PortSet(((6000, 6100), (7002, 7002))))
        self.assertEqual(
            (s.authenticate_heartbeats, s.authenticate_new_work_conns), (True, False)
        )
        self.assertEqual((s.dashboard_port, s.dashboard_user), (7500, "admin"))
        self.assertEqual(
            (s.tcp_mux, s.heartbeat_timeout, s.tls_only), (False, 90, True)
        )
        self.assertEqual(
            (s.log_file, s.log_way, s.log_level), ("/var/log/frps.log", "file", "debug")
        )
        self.assertEqual(s.max_unauthenticated_per_source, 8)
        self.assertEqual(s.dashboard_allowed_hosts, ("relay.example.test",))

    def test_client(self):
        models = {
            fmt: model_values(client(text, f"frpc.{fmt}"))
            for fmt, text in self._formats(CLIENT_TOML).items()
        }
        self.assertEqual(models["toml"], models["yaml"])
        self.assertEqual(models["toml"], models["json"])
        c = client(CLIENT_TOML)
        self.assertEqual(c.warnings, ())
        self.assertEqual((c.server_addr, c.server_port), ("relay.example.test", 7001))
        self.assertEqual(
            (c.login_fail_exit, c.tls_enable, c.pool_count), (False, False, 2)
        )
        self.assertEqual(c.metas, (("team", "ml"),))
        self.assertEqual((c.admin_port, c.admin_pwd), (7400, "pw"))
        self.assertEqual(c.start, ("ssh", "web"))
        self.assertEqual(
            c.proxies,
            (
                ProxyConfig(
                    name="alice.ssh",
                    section="ssh",
                    local_port=22,
                    remote_port=6022,
                    use_encryption=True,
                ),
                ProxyConfig(
                    name="alice.web",
                    section="web",
                    type="http",
                    local_port=8888,
                    subdomain="web",
                    custom_domains=("a.example.test", "b.example.test"),
                    locations=("/", "/api"),
                    http_user="u",
                    http_pwd="p",
                    headers=(("x-from", "relay"),),
                    metas=(("owner", "alice"),),
                ),
            ),
        )

    def test_same_as_ini(self):
        """A v1 file and the INI file that says the same give equal
        models."""
        ini = parse_client_config(
            textwrap.dedent("""\
                [common]
                server_addr = relay.example.test
                server_port = 7001
                token = 0123456789abcdef
                [ssh]
                local_port = 22
                remote_port = 6022
                """)
        )
        v1 = client("""\
            serverAddr = "relay.example.test"
            serverPort = 7001
            auth.token = "0123456789abcdef"
            transport.heartbeatInterval = 30
            [[proxies]]
            name = "ssh"
            type = "tcp"
            localPort = 22
            remotePort = 6022
            """)
        self.assertEqual(model_values(ini), model_values(v1))

    def test_heartbeat_default(self):
        """frp v1's heartbeatInterval is -1 (off) with tcpMux, 30 without
        (frpc.ini's is 30 either way)."""
        self.assertEqual(client("serverPort = 7000\n").heartbeat_interval, -1)
        self.assertEqual(client("transport.tcpMux = false\n").heartbeat_interval, 30)


def _sample(kind, ini, index):
    """A valid value of an implemented key for the key table test."""
    special = {
        "authentication_method": "token",
        "log_level": "warn",
        "protocol": "tcp",
        "type": None,
        "heartbeat_timeout": 900,
        "heartbeat_interval": 20,
        "unauthenticated_timeout": 5,
        "bind_addr": "127.0.0.1",
    }
    if ini in special:
        return special[ini]
    return {
        "str": f"v-{ini}",
        "int": 1000 + index,
        "bool": True,
        "list": [f"a-{ini}", f"b-{ini}"],
    }.get(kind)


def _model_value(kind, value):
    return tuple(value) if kind == "list" else value


def _nested(path, value, into):
    *parents, last = path.split(".")
    for part in parents:
        into = into.setdefault(part, {})
    into[last] = value


class KeyTableTests(unittest.TestCase):
    """Every implemented v1 key of the table sets the right model field."""

    def _check(self, keys, fields, own, parse, extra=None):
        data, expected = {}, {}
        all_keys = list(keys) + [
            type(keys[0])(f"labrelay.{camel_case(k)}", k, v1_kind(kind))
            for k, kind in own.items()
        ]
        for index, key in enumerate(all_keys):
            if key.ini not in fields or key.kind not in ("str", "int", "bool", "list"):
                continue
            value = _sample(key.kind, key.ini, index)
            if value is None:
                continue
            _nested(key.path, value, data)
            expected[key.ini] = _model_value(key.kind, value)
        for path, value in (extra or {}).items():
            _nested(path, value, data)
        model = parse(json.dumps(data))
        for ini, value in expected.items():
            self.assertEqual(getattr(model, ini), value, ini)
        return model, expected

    def test_server_keys(self):
        fields = set(config.SERVER_KEYS) | set(config.SERVER_OWN_KEYS)
        model, expected = self._check(
            SERVER_V1_KEYS,
            fields,
            config.SERVER_OWN_KEYS,
            lambda t: parse_server_config(t, "frps.json"),
        )
        # every implemented key but the derived log_way was set
        self.assertEqual(
            fields - set(expected) - {"log_way"},
            {
                "allow_ports",
                "authenticate_heartbeats",
                "authenticate_new_work_conns",
                "dashboard_tls_mode",
            },
        )

    def test_client_keys(self):
        fields = set(config.CLIENT_KEYS) | set(config.CLIENT_OWN_KEYS)
        model, expected = self._check(
            CLIENT_V1_KEYS,
            fields,
            config.CLIENT_OWN_KEYS,
            lambda t: parse_client_config(t, "frpc.json"),
        )
        self.assertEqual(
            fields - set(expected) - {"log_way"},
            {"authenticate_heartbeats", "authenticate_new_work_conns"},
        )

    def test_proxy_keys(self):
        for ptype in ("tcp", "http"):
            fields = set(config.PROXY_KEYS) | set(
                config.TCP_PROXY_KEYS if ptype == "tcp" else config.HTTP_PROXY_KEYS
            )
            proxy, expected = {"name": "p", "type": ptype}, {}
            for index, key in enumerate(PROXY_V1_KEYS):
                if (
                    key.ini not in fields
                    or key.kind not in ("str", "int", "bool", "list")
                    or (key.types and ptype not in key.types)
                ):
                    continue
                value = _sample(key.kind, key.ini, index)
                if key.ini == "subdomain":
                    value = "sub"
                if value is None:
                    continue
                _nested(key.path, value, proxy)
                expected[key.ini] = _model_value(key.kind, value)
            c = parse_client_config(json.dumps({"proxies": [proxy]}), "frpc.json")
            (model,) = c.proxies
            for ini, value in expected.items():
                self.assertEqual(getattr(model, ini), value, (ptype, ini))
            self.assertEqual(fields - set(expected), {"type", "role"}, ptype)

    def test_dashboard_tls(self):
        """The webServer.tls table of frps turns the dashboard's TLS on."""
        s = server(
            'webServer.port = 7500\n[webServer.tls]\ncertFile = "c"\nkeyFile = "k"\n'
        )
        self.assertEqual(
            (
                s.dashboard_tls_mode,
                s.dashboard_tls_cert_file,
                s.dashboard_tls_key_file,
            ),
            (True, "c", "k"),
        )
        self.assertFalse(server("webServer.port = 7500\n").dashboard_tls_mode)

    def test_kinds_match_ini(self):
        """Each v1 key's type is the one its INI key's kind needs."""
        tables = (
            (SERVER_V1_KEYS, {**config.SERVER_KEYS, **config.SERVER_NOT_YET}),
            (CLIENT_V1_KEYS, {**config.CLIENT_KEYS, **config.CLIENT_NOT_YET}),
            (
                PROXY_V1_KEYS,
                {
                    **config.PROXY_KEYS,
                    **config.TCP_PROXY_KEYS,
                    **config.HTTP_PROXY_KEYS,
                    **config.PROXY_NOT_YET,
                },
            ),
        )
        for keys, ini_kinds in tables:
            for key in keys:
                if key.ini in ini_kinds and key.kind not in ("scopes", "table"):
                    self.assertEqual(key.kind, v1_kind(ini_kinds[key.ini]), key.path)

    def test_every_not_yet_key_has_a_v1_key(self):
        """The INI not-yet tables' keys all have a v1 key (or are prefixes
        or obsolete in v1)."""
        server_ini = {k.ini for k in SERVER_V1_KEYS}
        self.assertEqual(set(config.SERVER_NOT_YET) - server_ini, set())
        client_ini = {k.ini for k in CLIENT_V1_KEYS}
        self.assertEqual(set(config.CLIENT_NOT_YET) - client_ini, set())
        proxy_ini = {k.ini for k in PROXY_V1_KEYS}
        self.assertEqual(set(config.PROXY_NOT_YET) - proxy_ini, set())


class ProblemTests(unittest.TestCase):
    """Every problem names the file, the v1 key as written and the line."""

    def assertError(self, parse, text, message, source=None, **kw):
        args = (text,) if source is None else (text, source)
        e = self.assertRaises(ConfigError, parse, *args, **kw)
        self.assertEqual(str(e), message)
        return e

    def test_out_of_range(self):
        self.assertError(
            server,
            "bindPort = 7000\n\nwebServer.port = 70000\n",
            "frps.toml: webServer.port (line 3): port 70000 is out of range 0-65535",
        )

    def test_proxy_local_port_out_of_range(self):
        self.assertError(
            client,
            """\
            [[proxies]]
            name = "ssh"
            type = "tcp"
            localPort = 65536
            """,
            'frpc.toml: proxies[0] "ssh" localPort (line 4): port 65536 is out of '
            "range 0-65535",
        )

    def test_proxy_missing_local_port(self):
        self.assertError(
            client,
            '[[proxies]]\nname = "ssh"\ntype = "tcp"\n',
            'frpc.toml: proxies[0] "ssh" localPort (line 1): required: the local '
            "port to forward to (1-65535)",
        )

    def test_wrong_types(self):
        self.assertError(
            server,
            'bindPort = "7000"\n',
            "frps.toml: bindPort (line 1): expected an integer, got a string",
        )
        self.assertError(
            server,
            'transport.tcpMux = "true"\n',
            "frps.toml: transport.tcpMux (line 1): expected a boolean (true or "
            "false), got a string",
        )
        self.assertError(
            server,
            '{\n  "bindPort": 7000,\n  "enablePrometheus": 1\n}\n',
            "frps.json: enablePrometheus (line 3): expected a boolean (true or "
            "false), got an integer",
            "frps.json",
        )
        self.assertError(
            client,
            "proxies:\n  - name: web\n    type: http\n    customDomains: a.test\n",
            'frpc.yaml: proxies[0] "web" customDomains (line 4): expected an '
            "array of strings, got a string",
            "frpc.yaml",
        )

    def test_yaml_booleans(self):
        """YAML's booleans are what PyYAML's safe loader gives (yes: true)."""
        c = client("transport:\n  tcpMux: no\n", "frpc.yaml")
        self.assertFalse(c.tcp_mux)

    def test_unknown_key_strict(self):
        self.assertError(
            server,
            "bindport = 7000\n",
            "frps.toml: bindport (line 1): unknown key (did you mean 'bindPort'?)",
        )
        self.assertError(
            client,
            '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\nremotePrt = 1\n',
            'frpc.toml: proxies[0] "ssh" remotePrt (line 5): unknown key (did you '
            "mean 'remotePort'?)",
        )
        self.assertError(
            client,
            '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\n'
            'customDomains = ["a"]\n',
            'frpc.toml: proxies[0] "ssh" customDomains (line 5): not a key of tcp '
            "proxies",
        )

    def test_unknown_key_not_strict(self):
        s = server("bindport = 7000\nwebServer.prot = 1\n", strict=False)
        self.assertEqual(
            s.warnings,
            (
                "frps.toml: bindport (line 1): unknown key (did you mean "
                "'bindPort'?); ignored",
                "frps.toml: webServer.prot (line 2): unknown key (did you mean "
                "'webServer.port'?); ignored",
                "frps.toml: auth.token: empty: any client that reaches bindPort "
                "can log in; set a random token (openssl rand -hex 16)",
            ),
        )
        self.assertEqual(s.bind_port, 7000)

    def test_syntax_errors(self):
        self.assertError(
            server,
            "bindPort = 7000\nbindAddr = \n",
            "frps.toml: line 2, column 12: TOML syntax error: Invalid value",
        )
        self.assertError(
            server,
            "bindPort: 7000\n  bad: [\n",
            "frps.yaml: line 2, column 6: YAML syntax error: mapping values are "
            "not allowed here",
            "frps.yaml",
        )
        # the parser's own words differ between CPython and PyPy
        e = self.assertRaises(
            ConfigError, server, '{\n  "bindPort": 7000,\n}\n', "frps.json"
        )
        self.assertTrue(
            str(e).startswith("frps.json: line 3, column 1: JSON syntax error: "),
            str(e),
        )
        self.assertError(
            server,
            "- 1\n- 2\n",
            "frps.yaml: the file must hold a table of settings, not an array",
            "frps.yaml",
        )

    def test_checks_in_v1_words(self):
        """The INI layer's checks speak of v1 keys."""
        self.assertError(
            server,
            'webServer.port = 7500\n[webServer.tls]\ncertFile = "c"\n',
            "frps.toml: webServer.tls.keyFile: required when webServer.tls is true",
        )
        self.assertError(
            client,
            "transport.heartbeatInterval = 30\ntransport.heartbeatTimeout = 10\n",
            "frpc.toml: transport.heartbeatTimeout (line 2): 10 is less than "
            "transport.heartbeatInterval 30",
        )
        self.assertError(
            server,
            'auth.additionalScopes = ["HeartBeat"]\n',
            "frps.toml: auth.additionalScopes (line 1): unknown scope 'HeartBeat'; "
            "frp accepts HeartBeats, NewWorkConns",
        )
        self.assertError(
            client,
            '[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 1\n'
            '[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 2\n',
            "frpc.toml: proxies[1] (line 5): proxy name 'a' is duplicated",
        )
        self.assertError(
            client,
            '[[proxies]]\nname = "a"\ntype = "ftp"\n',
            "frpc.toml: proxies[0] type (line 3): unknown proxy type 'ftp'; frp "
            "has tcp, udp, http, https, tcpmux, stcp, sudp, xtcp",
        )
        c = server("bindAddr = '127.0.0.1'\nwebServer.user = 'admin'\n")
        self.assertEqual(
            c.warnings,
            (
                "frps.toml: webServer.user (line 2): has no effect without webServer.port",
            ),
        )

    def test_not_yet_at_default_silent(self):
        """A not-yet key at its zero value or frp's default is silent."""
        c = client(
            'transport.wireProtocol = "v1"\nudpPacketSize = 1500\n'
            "webServer.pprofEnable = false\n"
        )
        self.assertEqual(c.warnings, ())
        c = client('transport.wireProtocol = "v2"\nwebServer.pprofEnable = true\n')
        self.assertEqual(
            c.warnings,
            (
                "frpc.toml: transport.wireProtocol (line 1): not supported by "
                "labrelay yet; ignored",
                "frpc.toml: webServer.pprofEnable (line 2): not supported by "
                "labrelay yet; ignored",
            ),
        )


class TemplateTests(unittest.TestCase):
    def test_envs_in_every_format(self):
        for fmt, text in (
            ("toml", 'bindPort = {{ .Envs.PORT }}\nauth.token = "{{ .Envs.TOKEN }}"\n'),
            ("yaml", "bindPort: {{ .Envs.PORT }}\nauth:\n  token: {{ .Envs.TOKEN }}\n"),
            (
                "json",
                '{"bindPort": {{ .Envs.PORT }}, "auth": {"token": "{{ .Envs.TOKEN }}"}}',
            ),
        ):
            s = server(text, f"frps.{fmt}")
            self.assertEqual((s.bind_port, s.token), (7100, ENV["TOKEN"]), fmt)

    def test_unset_variable(self):
        e = self.assertRaises(ConfigError, server, 'auth.token = "{{ .Envs.NOPE }}"\n')
        self.assertIn("frps.toml:", str(e))
        self.assertIn("NOPE", str(e))


class ClientFileTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(os.path.join(self.dir, "conf.d"))

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def test_includes(self):
        """Included files add their proxies, each in its own format."""
        self.write(
            "conf.d/a.yaml",
            """\
            proxies:
              - name: web
                type: http
                localPort: 8080
                subdomain: web
            """,
        )
        self.write(
            "conf.d/b.json",
            '{"serverPort": 1, "proxies": [{"name": "db", "type": "tcp", '
            '"localPort": 5432, "remotePort": 6432}]}',
        )
        path = self.write(
            "frpc.toml",
            """\
            includes = ["conf.d/*"]
            [[proxies]]
            name = "ssh"
            type = "tcp"
            localPort = 22
            """,
        )
        c = load_client_config(path, ENV)
        self.assertEqual([p.name for p in c.proxies], ["ssh", "web", "db"])
        self.assertEqual(c.includes, ("conf.d/*",))
        b = os.path.join(os.path.abspath(self.dir), "conf.d", "b.json")
        self.assertEqual(
            c.warnings,
            (
                f"{b}: serverPort (line 1): only proxies and visitors are read "
                "from an included file; ignored",
            ),
        )

    def test_include_errors_name_their_file(self):
        self.write(
            "conf.d/a.toml", '[[proxies]]\nname = "x"\ntype = "tcp"\nlocalPot = 1\n'
        )
        path = self.write("frpc.toml", 'includes = ["conf.d/*.toml"]\n')
        e = self.assertRaises(ConfigError, load_client_config, path, ENV)
        a = os.path.join(os.path.abspath(self.dir), "conf.d", "a.toml")
        self.assertEqual(
            str(e),
            f'{a}: proxies[0] "x" localPot (line 4): unknown key (did you mean '
            f"'localPort'?)",
        )

    def test_start_enabled_visitors(self):
        c = client("""\
            start = ["a", "v", "ghost"]
            [[proxies]]
            name = "a"
            type = "tcp"
            localPort = 1
            [[proxies]]
            name = "b"
            type = "tcp"
            localPort = 2
            [[proxies]]
            name = "c"
            type = "tcp"
            localPort = 3
            enabled = false
            [[visitors]]
            name = "v"
            type = "xtcp"
            serverName = "a"
            [[visitors]]
            name = "w"
            type = "xtcp"
            """)
        self.assertEqual([p.name for p in c.proxies], ["a"])
        self.assertEqual(
            c.warnings,
            (
                'frpc.toml: visitors[0] "v" (line 15): xtcp visitors are not '
                "supported by labrelay yet; skipped",
                "frpc.toml: start (line 1): no proxy named 'ghost'",
            ),
        )

    def test_own_keys(self):
        c = client("labrelay.maxBufferedBytes = 65536\n")
        self.assertEqual(c.max_buffered_bytes, 65536)
        e = self.assertRaises(ConfigError, client, "labrelay.maxBuferedBytes = 1\n")
        self.assertEqual(
            str(e),
            "frpc.toml: labrelay.maxBuferedBytes (line 1): unknown key (did you "
            "mean 'labrelay.maxBufferedBytes'?)",
        )
        e = self.assertRaises(
            ConfigError, server, "labrelay.maxProxiesPerClient = -1\n"
        )
        self.assertEqual(
            str(e),
            "frps.toml: labrelay.maxProxiesPerClient (line 1): must not be "
            "negative (0 turns it off), not -1",
        )

    def test_dotted_name_has_no_parent(self):
        """A v1 proxy named ``web.api`` inherits nothing from ``web``."""
        c = client("""\
            [[proxies]]
            name = "web"
            type = "tcp"
            localPort = 1
            transport.useEncryption = true
            [[proxies]]
            name = "web.api"
            type = "tcp"
            localPort = 2
            """)
        self.assertEqual([p.use_encryption for p in c.proxies], [True, False])
