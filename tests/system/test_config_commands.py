# -*- test-case-name: tests.system.test_config_commands -*-
"""
frp's v1 config files as users meet them, with real processes:
``labrelay-server verify`` and ``labrelay-client verify`` (exit status and
frp's wording), ``labrelay-client convert`` of an frpc.ini into a
frpc.toml that then runs, and ``twistd`` started from TOML and YAML files
relaying a real connection.
"""

import os
import sys

from twisted.trial.unittest import TestCase

from ..support.harness import async_test, echo_server
from ..support.processes import (
    TOKEN,
    TWISTD,
    client_ini,
    free_port,
    run,
    twistd,
    write_config,
)
from .test_processes import echo_round_trip

SERVER_CLI = [sys.executable, "-m", "labrelay.server_cli"]
CLIENT_CLI = [sys.executable, "-m", "labrelay.client.cli"]


def server_toml(port: int, extra: str = "") -> str:
    return (
        f'bindAddr = "127.0.0.1"\nbindPort = {port}\nauth.token = "{TOKEN}"\n' + extra
    )


class VerifyTests(TestCase):
    """``verify`` exits 0 with frp's "syntax is ok" line, or 1 naming
    file, key and line."""

    timeout = 60

    async def verify(self, cli, name, text, *options):
        path = write_config(self, name, text)
        process = await run(self, "verify", cli + ["verify", "-c", path, *options])
        return path, process

    @async_test
    async def test_server_toml_ok(self):
        path, process = await self.verify(SERVER_CLI, "frps.toml", server_toml(7000))
        self.assertEqual(process.exit_code, 0, process.tail())
        self.assertIn(
            f"labrelay-server: the configuration file {path} syntax is ok",
            process.output,
        )

    @async_test
    async def test_client_yaml_ok(self):
        path, process = await self.verify(
            CLIENT_CLI,
            "frpc.yaml",
            "serverAddr: 127.0.0.1\nserverPort: 7000\n"
            "proxies:\n  - name: ssh\n    type: tcp\n"
            "    localPort: 22\n    remotePort: 6001\n",
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        self.assertIn("syntax is ok", process.output)

    @async_test
    async def test_syntax_error_names_line(self):
        path, process = await self.verify(
            SERVER_CLI, "frps.toml", 'bindPort = 7000\nauth.token = "unclosed\n'
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertNotIn("syntax is ok", process.output)
        self.assertIn(path, process.output)
        self.assertIn("line 2", process.output)
        self.assertNotIn("Traceback", process.output)

    @async_test
    async def test_unknown_key_strict_and_not(self):
        """A misspelt key is an error with a suggestion (frp's strict
        mode, the default); --strict_config=false makes it a warning."""
        text = server_toml(7000, "bindPrt = 7001\n")
        path, process = await self.verify(SERVER_CLI, "frps.toml", text)
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertIn("bindPrt", process.output)
        self.assertIn("bindPort", process.output)
        self.assertIn(path, process.output)
        _, process = await self.verify(
            SERVER_CLI, "frps.toml", text, "--strict_config=false"
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        self.assertIn("warning", process.output)
        self.assertIn("bindPrt", process.output)

    @async_test
    async def test_bad_value_names_key_and_line(self):
        path, process = await self.verify(
            SERVER_CLI,
            "frps.toml",
            'bindAddr = "127.0.0.1"\nbindPort = 7000\nwebServer.port = 70000\n',
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertIn("webServer.port", process.output)
        self.assertIn("line 3", process.output)
        self.assertIn("70000", process.output)


class ConvertTests(TestCase):
    """``labrelay-client convert frpc.ini > frpc.toml``: the TOML file
    verifies, and frp's own frpc reads it the same way when installed."""

    timeout = 60

    @async_test
    async def test_convert_then_verify(self):
        ini = write_config(
            self,
            "frpc.ini",
            client_ini(7000, [("ssh", 22, 6001), ("web", 8888, 6002)])
            + "\n[range:gpu]\ntype = tcp\nlocal_port = 9000-9001\n"
            "remote_port = 7100-7101\n",
        )
        process = await run(self, "convert", CLIENT_CLI + ["convert", ini])
        self.assertEqual(process.exit_code, 0, process.tail())
        self.assertEqual(process.stderr, "")
        toml = os.path.join(os.path.dirname(ini), "frpc.toml")
        with open(toml, "w") as f:
            f.write(process.output)
        self.assertEqual(process.output.count("[[proxies]]"), 4)
        verified = await run(self, "verify", CLIENT_CLI + ["verify", "-c", toml])
        self.assertEqual(verified.exit_code, 0, verified.tail())
        frpc = os.environ.get("LABRELAY_FRPC") or _which("frpc")
        if frpc:
            real = await run(self, "frpc verify", [frpc, "verify", "-c", toml])
            self.assertEqual(real.exit_code, 0, real.tail())

    @async_test
    async def test_convert_refuses_bad_ini(self):
        ini = write_config(self, "frps.ini", "[common]\nbind_port = seven\n")
        process = await run(self, "convert", SERVER_CLI + ["convert", ini])
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertIn(f"labrelay-server: {ini}: [common] bind_port", process.output)


def _which(name):
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class TwistdTests(TestCase):
    """``twistd labrelay-server -c frps.toml`` and ``twistd labrelay-client
    -c frpc.yaml`` relay a connection byte for byte; a bad TOML file stops
    twistd with one line naming it."""

    timeout = 60

    @async_test
    async def test_toml_server_yaml_client(self):
        port = free_port()
        server = twistd(
            self,
            "labrelay-server",
            write_config(self, "frps.toml", server_toml(port)),
        )
        await server.wait_for(rf"starting on {port}$")
        backend = echo_server(self)
        remote = free_port()
        client = twistd(
            self,
            "labrelay-client",
            write_config(
                self,
                "frpc.yaml",
                f"serverAddr: 127.0.0.1\nserverPort: {port}\n"
                f"auth:\n  token: {TOKEN}\n"
                f"proxies:\n  - name: echo\n    type: tcp\n"
                f"    localIP: 127.0.0.1\n    localPort: {backend}\n"
                f"    remotePort: {remote}\n",
            ),
        )
        await client.wait_for(r"\[echo\] start proxy success")
        await echo_round_trip(self, remote)

    @async_test
    async def test_bad_toml_stops_twistd(self):
        path = write_config(self, "frps.toml", "bindPort = 7000\nbindPort = 7001\n")
        process = await run(
            self,
            "labrelay-server",
            TWISTD + ["-n", "--pidfile=", "labrelay-server", "-c", path],
            path=os.path.dirname(path),
        )
        self.assertNotEqual(process.exit_code, 0, process.tail())
        lines = [line for line in process.output.splitlines() if path in line]
        self.assertEqual(len(lines), 1, process.output)
        self.assertIn("line 2", lines[0])
        self.assertNotIn("Traceback", process.output)
