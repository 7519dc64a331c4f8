"""
frps.ini/frpc.ini converted to frp's v1 TOML, YAML and JSON: the INI file
and its conversion load into equal models (round trips of the
repository's configs and of configs using every kind of key), and
templates stay templates.
"""

import glob
import json
import os
import textwrap

import attrs
import yaml
from twisted.trial import unittest

from labrelay.config import (
    ConfigError,
    parse_client_config,
    parse_server_config,
)
from labrelay.config.convert import convert_client_config, convert_server_config

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
FORMATS = ("toml", "yaml", "json")
ENV = {
    "LABRELAY_SERVER": "relay.example.test",
    "LABRELAY_TOKEN": "0123456789abcdef0123",
    "LABRELAY_ADMIN_PWD": "admin-secret",
    "PORT": "7100",
    "MUX": "false",
}

RICH_SERVER = """\
[common]
bind_addr = 0.0.0.0
bind_port = {{ .Envs.PORT }}
token = {{ .Envs.LABRELAY_TOKEN }}
authenticate_new_work_conns = true
allow_ports = 2000-3000,3001,4000-5000
vhost_http_port = 8080
vhost_http_timeout = 30
subdomain_host = example.test
dashboard_port = 7500
dashboard_user = admin
dashboard_pwd = pw
dashboard_tls_mode = true
dashboard_tls_cert_file = /etc/c.pem
dashboard_tls_key_file = /etc/k.pem
enable_prometheus = true
tcp_mux = {{ .Envs.MUX }}
tls_only = true
log_file = /var/log/frps.log
log_level = debug
log_max_days = 7
max_ports_per_client = 10
max_unauthenticated_per_source = 4
dashboard_allowed_hosts = relay.example.test, relay2.example.test
udp_packet_size = 1400
privilege_token = old
[plugin.user-manager]
addr = 127.0.0.1:9000
path = /handler
ops = Login
"""

RICH_CLIENT = """\
[common]
server_addr = {{ .Envs.LABRELAY_SERVER }}
server_port = 7000
token = {{ .Envs.LABRELAY_TOKEN }}
user = alice
authenticate_heartbeats = true
tcp_mux = false
heartbeat_timeout = 120
pool_count = 3
tls_enable = false
admin_port = 7400
admin_pwd = {{ .Envs.LABRELAY_ADMIN_PWD }}
meta_team = ml
start = ssh,web,range_0,range_1,web.api
max_buffered_bytes = 65536
log_level = warn

[ssh]
type = tcp
local_port = 22
remote_port = 6022
use_encryption = true
use_compression = true
meta_owner = alice
custom_domains = ignored.example.test

[web]
type = http
local_port = 8888
subdomain = web
custom_domains = a.example.test,b.example.test
locations = /,/api
http_user = u
http_pwd = p
host_header_rewrite = local
header_X-From = relay
route_by_http_user = u

[web.api]
local_port = 9999
subdomain = api

[range:range]
type = tcp
local_port = 7000-7001
remote_port = 8000-8001

[dns]
type = udp
local_port = 53
remote_port = 6053

[stcp-visitor]
role = visitor
type = stcp
server_name = secret
sk = abc
bind_port = 9000

[socks]
type = tcp
remote_port = 6005
plugin = socks5
plugin_user = u
plugin_passwd = p
"""


def model_values(model):
    """A model's values without where it came from and which files it
    included (a converted file has its included proxies inline)."""
    values = attrs.asdict(model, recurse=False)
    for key in ("source", "warnings", "includes"):
        values.pop(key, None)
    return values


class RoundTripTests(unittest.TestCase):
    def round_trip(self, text, source, server, base_dir=None):
        """Load *text* as INI and converted to each v1 format; the models
        must be equal.  Returns the converted texts."""
        if server:
            ini = parse_server_config(text, source, ENV)
        else:
            ini = parse_client_config(text, source, ENV, base_dir)
        converted = {}
        for fmt in FORMATS:
            v1_source = os.path.splitext(source)[0] + "." + fmt
            if server:
                out = convert_server_config(text, source, fmt=fmt)
                v1 = parse_server_config(out, v1_source, ENV)
            else:
                out = convert_client_config(text, source, fmt=fmt, base_dir=base_dir)
                v1 = parse_client_config(out, v1_source, ENV, base_dir)
            self.assertEqual(model_values(ini), model_values(v1), (source, fmt, out))
            converted[fmt] = out
        return converted

    def test_repository_configs(self):
        """conf/*.ini and the INI test configs under tests/ round-trip."""
        paths = sorted(
            glob.glob(os.path.join(ROOT, "conf", "*.ini"))
            + glob.glob(os.path.join(ROOT, "tests", "**", "*.ini"), recursive=True)
        )
        self.assertGreater(len(paths), 4)
        for path in paths:
            with open(path) as f:
                text = f.read()
            server = os.path.basename(path).startswith("frps")
            self.round_trip(text, path, server)

    def test_rich_server(self):
        out = self.round_trip(RICH_SERVER, "frps.ini", server=True)
        toml = out["toml"]
        self.assertIn("bindPort = {{ .Envs.PORT }}", toml)
        self.assertIn('token = "{{ .Envs.LABRELAY_TOKEN }}"', toml)
        self.assertIn("tcpMux = {{ .Envs.MUX }}", toml)
        self.assertNotIn(ENV["LABRELAY_TOKEN"], toml)
        self.assertNotIn("privilege", toml)
        data = json.loads(
            out["json"]
            .replace("{{ .Envs.PORT }}", "7100")
            .replace("{{ .Envs.MUX }}", "false")
        )
        self.assertEqual(
            data["allowPorts"],
            [
                {"start": 2000, "end": 3000},
                {"single": 3001},
                {"start": 4000, "end": 5000},
            ],
        )
        self.assertEqual(data["auth"]["additionalScopes"], ["NewWorkConns"])
        self.assertEqual(
            data["webServer"]["tls"],
            {"certFile": "/etc/c.pem", "keyFile": "/etc/k.pem"},
        )
        self.assertEqual(data["labrelay"]["maxUnauthenticatedPerSource"], 4)
        self.assertEqual(
            data["httpPlugins"],
            [
                {
                    "name": "user-manager",
                    "addr": "127.0.0.1:9000",
                    "path": "/handler",
                    "ops": ["Login"],
                }
            ],
        )

    def test_rich_client(self):
        out = self.round_trip(RICH_CLIENT, "frpc.ini", server=False)
        data = yaml.safe_load(out["yaml"])
        self.assertEqual(data["serverAddr"], "{{ .Envs.LABRELAY_SERVER }}")
        self.assertEqual(data["auth"]["additionalScopes"], ["HeartBeats"])
        names = [p["name"] for p in data["proxies"]]
        self.assertEqual(
            names, ["ssh", "web", "web.api", "range_0", "range_1", "dns", "socks"]
        )
        web_api = data["proxies"][2]
        # what [web.api] inherits from [web] is written out
        self.assertEqual(web_api["customDomains"], ["a.example.test", "b.example.test"])
        # as in go-ini, header_* and meta_* pairs are the section's own
        self.assertNotIn("requestHeaders", web_api)
        # a key the tcp proxy ignores is left out (frp would refuse it)
        self.assertNotIn("customDomains", data["proxies"][0])
        self.assertEqual(
            data["proxies"][-1]["plugin"],
            {"type": "socks5", "username": "u", "password": "p"},
        )
        self.assertEqual(
            data["visitors"],
            [
                {
                    "name": "stcp-visitor",
                    "type": "stcp",
                    "serverName": "secret",
                    "secretKey": "abc",
                    "bindPort": 9000,
                }
            ],
        )
        self.assertNotIn(ENV["LABRELAY_ADMIN_PWD"], out["toml"])

    def test_heartbeat_written_when_defaults_differ(self):
        """frpc.ini's heartbeat_interval defaults to 30; v1's to -1 with
        tcpMux: the conversion writes 30."""
        out = convert_client_config("[common]\nserver_port = 7000\n")
        self.assertIn("heartbeatInterval = 30", out)
        out = convert_client_config("[common]\ntcp_mux = false\n")
        self.assertNotIn("heartbeatInterval", out)

    def test_includes_inline(self):
        """Included INI files' proxies are written inline."""
        base = self.mktemp()
        os.makedirs(os.path.join(base, "conf.d"))
        with open(os.path.join(base, "conf.d", "web.ini"), "w") as f:
            f.write("[web]\ntype = http\nlocal_port = 80\nsubdomain = web\n")
        text = "[common]\nincludes = conf.d/*.ini\n[ssh]\nlocal_port = 22\n"
        out = self.round_trip(text, os.path.join(base, "frpc.ini"), False, base)
        self.assertNotIn("includes", out["toml"])
        self.assertIn('name = "web"', out["toml"])

    def test_dashboard_tls_off_drops_files(self):
        """frp reads the dashboard's certificate only with TLS on."""
        out = convert_server_config(
            "[common]\ndashboard_port = 7500\ndashboard_tls_cert_file = c\n"
        )
        self.assertNotIn("tls", out)

    def test_bad_ini(self):
        e = self.assertRaises(
            ConfigError, convert_client_config, "[ssh]\nlocal_port=1\n"
        )
        self.assertIn("[common]", str(e))
        e = self.assertRaises(
            ConfigError,
            convert_server_config,
            "[common]\nallow_ports = 70000\n",
            "frps.ini",
        )
        self.assertEqual(
            str(e), "frps.ini: [common] allow_ports: port 70000 is out of range 0-65535"
        )

    def test_unknown_format(self):
        self.assertRaises(
            ValueError, convert_server_config, "[common]\n", "frps.ini", fmt="xml"
        )

    def test_frp_reads_the_conversion(self):
        """The converted seed config is valid for frp's own strict schema,
        as labrelay's strict v1 reader sees it (no warnings beyond the
        INI file's)."""
        with open(os.path.join(ROOT, "conf", "frpc.ini")) as f:
            text = f.read()
        for fmt in FORMATS:
            out = convert_client_config(text, "frpc.ini", fmt=fmt)
            c = parse_client_config(out, f"frpc.{fmt}", ENV)
            self.assertEqual(c.warnings, ())
        self.assertEqual(
            textwrap.dedent(convert_client_config(text, "frpc.ini")).count(
                "[[proxies]]"
            ),
            3,
        )
