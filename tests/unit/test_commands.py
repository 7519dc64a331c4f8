# -*- test-case-name: tests.unit.test_commands -*-
"""
The console commands a new user meets first: ``labrelay-server`` and
``labrelay-client`` with ``--version`` and ``check``.
"""

import contextlib
import io
import os

from twisted.trial.unittest import SynchronousTestCase

from labrelay import FRP_VERSION, __version__, server_cli
from labrelay.client import cli as client_cli

from ..support import paths

VERSION = f"labrelay {__version__} (speaks frp {FRP_VERSION})"


class CommandCase(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = os.path.abspath(self.mktemp() + ".ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_main(self, main, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()


class VersionTests(CommandCase):
    def test_server_version(self):
        self.assertEqual(
            self.run_main(server_cli.main, "--version"), (0, VERSION + "\n", "")
        )

    def test_client_version(self):
        self.assertEqual(
            self.run_main(client_cli.main, "--version"), (0, VERSION + "\n", "")
        )


class CheckTests(CommandCase):
    def test_server_ok_with_warnings(self):
        path = self.write("[common]\nbind_addr = 127.0.0.1\nbind_prot = 1\n")
        code, out, err = self.run_main(server_cli.main, "check", "-c", path)
        self.assertEqual(code, 0)
        self.assertEqual(out, f"{path}: OK (1 warnings)\n")
        self.assertEqual(
            err,
            f"labrelay-server: warning: {path} [common] "
            f"bind_prot: unknown key; ignored (did you "
            f"mean 'bind_port'?)\n",
        )

    def test_server_error(self):
        path = self.write("[common]\nbind_prot = 1\nbind_port = x\n")
        code, out, err = self.run_main(server_cli.main, "check", "-c", path)
        self.assertEqual((code, out), (1, ""))
        lines = err.splitlines()
        self.assertEqual(len(lines), 2, err)
        self.assertIn("bind_prot: unknown key", lines[0])
        self.assertTrue(
            lines[1].startswith(f"labrelay-server: {path}: [common] bind_port: "),
            lines[1],
        )

    def test_client_ok_counts_proxies(self):
        path = self.write(
            "[common]\nserver_addr = relay.example\n"
            "[ssh]\nlocal_port = 22\nremote_port = 6001\n"
        )
        code, out, err = self.run_main(client_cli.main, "check", "-c", path)
        self.assertEqual(
            (code, out, err), (0, f"{path}: OK (0 warnings, 1 proxies)\n", "")
        )

    def test_client_missing_file(self):
        code, out, err = self.run_main(
            client_cli.main, "check", "-c", "/nonexistent/frpc.ini"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertIn("/nonexistent/frpc.ini: cannot read", err)


CONF = paths.CONF.path


class ShippedConfigTests(CommandCase):
    """conf/frps.ini and conf/frpc.ini, as the README uses them."""

    def env_file(self, **values) -> str:
        return self.write(
            "# /etc/labrelay/env\n"
            + "".join(f"{name}='{value}'\n" for name, value in values.items())
        )

    def test_relay_config_is_clean(self):
        """Checked with its variables set: no warnings."""
        self.patch(os, "environ", dict(os.environ, LABRELAY_TOKEN="a" * 32))
        code, out, err = self.run_main(
            server_cli.main, "check", "-c", os.path.join(CONF, "frps.ini")
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn("OK (0 warnings)", out)

    def test_client_config_with_env_file(self):
        """The client's variables from an EnvironmentFile: no warnings,
        and an admin API on loopback with a password."""
        from labrelay.client.cli import environment
        from labrelay.config import load_client_config

        env = self.env_file(
            LABRELAY_SERVER="relay.example",
            LABRELAY_TOKEN="t" * 32,
            LABRELAY_ADMIN_PWD="p" * 32,
        )
        path = os.path.join(CONF, "frpc.ini")
        code, out, err = self.run_main(
            client_cli.main, "--env-file", env, "check", "-c", path
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn("OK (0 warnings, 3 proxies)", out)
        config = load_client_config(path, environment(env))
        self.assertEqual(
            (config.admin_addr, config.admin_port, config.admin_user, config.admin_pwd),
            ("127.0.0.1", 7400, "admin", "p" * 32),
        )

    def test_client_config_names_a_missing_variable(self):
        env = self.env_file(LABRELAY_SERVER="relay.example", LABRELAY_TOKEN="t" * 32)
        self.patch(
            os,
            "environ",
            {k: v for k, v in os.environ.items() if not k.startswith("LABRELAY_")},
        )
        code, out, err = self.run_main(
            client_cli.main,
            "--env-file",
            env,
            "check",
            "-c",
            os.path.join(CONF, "frpc.ini"),
        )
        self.assertEqual(code, 1)
        self.assertIn("environment variable LABRELAY_ADMIN_PWD is not set", err)

    def test_missing_env_file(self):
        code, _, err = self.run_main(
            client_cli.main, "--env-file", "/nonexistent/env", "status"
        )
        self.assertEqual(code, 1)
        self.assertIn("--env-file /nonexistent/env: No such file", err)


class ShippedTomlConfigTests(CommandCase):
    """conf/frps.toml and conf/frpc.toml, the README's v1 files: the same
    relay and client as the INI files beside them."""

    ENV = {
        "LABRELAY_TOKEN": "a" * 32,
        "LABRELAY_SERVER": "relay.example",
        "LABRELAY_ADMIN_PWD": "p" * 32,
    }

    def same(self, load, name):
        import attrs

        ini = load(os.path.join(CONF, name + ".ini"), self.ENV)
        toml = load(os.path.join(CONF, name + ".toml"), self.ENV)
        self.assertEqual((ini.format, toml.format), ("ini", "toml"))
        self.assertEqual(toml.warnings, ())
        neutral = dict(source="", warnings=())
        if name == "frpc":
            # frp's v1 default with tcpMux on: no pings (frpc.ini's is 30)
            self.assertEqual(
                (ini.heartbeat_interval, toml.heartbeat_interval), (30, -1)
            )
            neutral["heartbeat_interval"] = 0
        self.assertEqual(attrs.evolve(ini, **neutral), attrs.evolve(toml, **neutral))

    def test_server(self):
        from labrelay.config import load_server_config

        self.same(load_server_config, "frps")

    def test_client(self):
        from labrelay.config import load_client_config

        self.same(load_client_config, "frpc")


class VerifyTests(CommandCase):
    """``verify``, worded as frp's ``frpc verify`` / ``frps verify``."""

    def write_as(self, name, text):
        path = os.path.join(os.path.dirname(self.write("")), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_ok(self):
        path = self.write_as("frps.toml", 'bindAddr = "127.0.0.1"\nbindPort = 7000\n')
        code, out, err = self.run_main(server_cli.main, "verify", "-c", path)
        self.assertEqual(
            (code, out, err),
            (0, f"labrelay-server: the configuration file {path} syntax is ok\n", ""),
        )

    def test_ini_too(self):
        path = self.write("[common]\nserver_addr = relay.example\n")
        code, out, _ = self.run_main(client_cli.main, "verify", "-c", path)
        self.assertEqual(code, 0)
        self.assertIn("syntax is ok", out)

    def test_error_after_warnings(self):
        path = self.write_as(
            "frpc.toml", 'serverAddr = "relay.example"\nserverPort = "seven"\n'
        )
        code, out, err = self.run_main(client_cli.main, "verify", "-c", path)
        self.assertEqual((code, out), (1, ""))
        self.assertIn(path, err)
        self.assertIn("serverPort", err)

    def test_strict_config_switch(self):
        path = self.write_as("frps.toml", "bindPort = 7000\nbindPrt = 1\n")
        code, _, err = self.run_main(server_cli.main, "verify", "-c", path)
        self.assertEqual(code, 1, err)
        self.assertIn("bindPort", err)
        for off in ("--strict_config=false", "--strict-config=0"):
            code, out, err = self.run_main(server_cli.main, "verify", "-c", path, off)
            self.assertEqual(code, 0, err)
            self.assertIn("warning", err)
            self.assertIn("bindPrt", err)

    def test_bad_strict_value(self):
        code, _, err = self.run_main(server_cli.main, "verify", "--strict_config=maybe")
        self.assertEqual(code, 1)
        self.assertIn("--strict_config", err)


class ConvertTests(CommandCase):
    def test_convert_ini_to_each_format(self):
        path = self.write(
            "[common]\nserver_addr = relay.example\n"
            "[ssh]\nlocal_port = 22\nremote_port = 6001\n"
        )
        for fmt, marker in (
            ("toml", "[[proxies]]"),
            ("yaml", "proxies:"),
            ("json", '"proxies"'),
        ):
            code, out, err = self.run_main(
                client_cli.main, "convert", path, "--format", fmt
            )
            self.assertEqual((code, err), (0, ""), fmt)
            self.assertIn(marker, out)
            self.assertIn("relay.example", out)

    def test_missing_file(self):
        code, out, err = self.run_main(server_cli.main, "convert", "/nonexistent/x.ini")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("/nonexistent/x.ini: cannot read", err)
