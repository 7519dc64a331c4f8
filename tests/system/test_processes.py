# -*- test-case-name: tests.system.test_processes -*-
"""
labrelay as users run it: ``twistd -n labrelay-server`` and ``twistd -n
labrelay-client`` as real processes from the working tree, configured by INI
files, relaying for an echo backend in the test process.
"""

import os
import socket

from twisted.trial.unittest import TestCase

from ..support.harness import async_test, connect_user, echo_server, within
from ..support.plugins import CLIENT_DESCRIPTION, SERVER_DESCRIPTION
from ..support.processes import (
    TWISTD,
    free_port,
    run,
    start_client,
    start_server,
    write_config,
)


async def echo_round_trip(testcase, port, size=1024 * 1024):
    """Send *size* random bytes to 127.0.0.1:*port* and assert the echo
    comes back whole and unchanged."""
    user = await connect_user(testcase, port)
    payload = os.urandom(size)
    user.transport.write(payload)
    received = await within(user.wait_for(size), 30)
    testcase.assertEqual(len(received), size)
    testcase.assertTrue(received == payload, "echo differs from what was sent")
    user.transport.loseConnection()
    await within(user.closed)


class PluginTests(TestCase):
    """twistd finds both labrelay commands."""

    timeout = 60

    @async_test
    async def test_twistd_help_lists_commands(self):
        """``twistd --help`` lists labrelay-server and labrelay-client with
        their one-line descriptions."""
        process = await run(self, "twistd --help", TWISTD + ["--help"])
        self.assertEqual(process.exit_code, 0, process.tail())
        text = " ".join(process.output.split())
        self.assertIn("labrelay-server " + SERVER_DESCRIPTION, text)
        self.assertIn("labrelay-client " + CLIENT_DESCRIPTION, text)

    @async_test
    async def test_version(self):
        """``--version`` of each command names labrelay's version and the
        frp version it speaks."""
        from labrelay import FRP_VERSION, __version__

        for command in ("labrelay-server", "labrelay-client"):
            process = await run(self, command, TWISTD + [command, "--version"])
            self.assertEqual(process.exit_code, 0, process.tail())
            self.assertEqual(
                process.output.strip(),
                f"labrelay {__version__} (speaks frp {FRP_VERSION})",
            )

    @async_test
    async def test_start_summary_and_no_factory_chatter(self):
        """One line says what the relay serves where; Twisted's factory
        lines (object reprs) stay out, also once a tunnel runs."""
        server = await start_server(self)
        await server.process.wait_for(
            rf"labrelay \S+ \(speaks frp \S+\) serving: bind port "
            rf"127\.0\.0\.1:{server.port}; token set, TLS accepted, "
            rf"tcp_mux on$"
        )
        backend = echo_server(self)
        client = start_client(self, server.port, [("echo", backend, 0)])
        port = await client.proxy_port("echo")
        await echo_round_trip(self, port, size=1000)
        for process in (server.process, client.process):
            self.assertNotIn("Starting factory", process.output)
            self.assertNotIn(" at 0x", process.output)

    @async_test
    async def test_version_logged_at_start(self):
        from labrelay import VERSION_TEXT

        server = await start_server(self)
        self.assertIn(
            f"{VERSION_TEXT} starting, config {server.config_path}",
            server.process.output,
        )


class RelayMixin:
    """A real server and client process relay an echo connection."""

    mux = None
    timeout = 60

    @async_test
    async def test_echo_byte_exact(self):
        """1 MiB through real server and client processes comes back
        byte-exact, then a second connection works too."""
        server = await start_server(self, mux=self.mux)
        backend = echo_server(self)
        client = start_client(self, server.port, [("echo", backend, 0)], mux=self.mux)
        await client.process.wait_for(r"login to server success")
        port = await client.proxy_port("echo")
        await server.process.wait_for(rf"proxy \[echo\] \(tcp\) started at :{port}$")
        await echo_round_trip(self, port)
        await echo_round_trip(self, port, size=1000)


class DefaultMuxTests(RelayMixin, TestCase):
    """tcp_mux left at its default (on) on both sides."""


class NoMuxTests(RelayMixin, TestCase):
    """tcp_mux = false on both sides."""

    mux = False


class ConfigErrorTests(TestCase):
    """A bad configuration stops the process with one clear line."""

    timeout = 60

    async def assert_config_error(self, command, text, *fragments, path=None):
        """Run *command* on config *text*; assert it exits non-zero and one
        output line names the file and every fragment."""
        if path is None:
            path = write_config(self, "bad.ini", text)
        process = await run(
            self,
            command,
            TWISTD + ["-n", "--pidfile=", command, "-c", path],
            path=os.path.dirname(path),
        )
        self.assertNotEqual(process.exit_code, 0, process.tail())
        lines = [line for line in process.output.splitlines() if path in line]
        self.assertEqual(len(lines), 1, process.output)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        self.assertNotIn("Traceback", process.output)
        self.assertNotIn("Usage:", process.output)
        self.assertTrue(lines[0].startswith(f"{command}: {path}: "), lines[0])
        return lines[0]

    @async_test
    async def test_warnings_then_error(self):
        """The warnings about other keys come first, with suggestions, and
        the error is the last line."""
        path = write_config(
            self, "bad.ini", "[common]\nbind_prot = 1\nbind_port = abc\n"
        )
        process = await run(
            self,
            "labrelay-server",
            TWISTD + ["-n", "--pidfile=", "labrelay-server", "-c", path],
            path=os.path.dirname(path),
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertEqual(
            process.output.strip().splitlines(),
            [
                f"labrelay-server: warning: {path} [common] bind_prot: unknown "
                f"key; ignored (did you mean 'bind_port'?)",
                f"labrelay-server: {path}: [common] bind_port: expected an "
                f"integer, got 'abc'",
            ],
        )

    @async_test
    async def test_bad_int(self):
        """A non-integer bind_port names file, [common] and the key."""
        await self.assert_config_error(
            "labrelay-server",
            "[common]\nbind_port = seven\n",
            "[common]",
            "bind_port",
            "seven",
        )

    @async_test
    async def test_unknown_proxy_type(self):
        """An unknown proxy type names file, section, key and the type."""
        await self.assert_config_error(
            "labrelay-client",
            "[common]\nserver_port = 7000\n\n[gpu]\ntype = teleport\nlocal_port = 22\n",
            "[gpu]",
            "type",
            "teleport",
        )

    @async_test
    async def test_missing_common(self):
        """A file without [common] says so."""
        await self.assert_config_error(
            "labrelay-client",
            "[ssh]\ntype = tcp\nlocal_port = 22\n",
            "[common]",
            "missing",
        )

    @async_test
    async def test_missing_file(self):
        """A config file that does not exist is named."""
        path = os.path.abspath(os.path.join(self.mktemp(), "nowhere.ini"))
        os.makedirs(os.path.dirname(path))
        line = await self.assert_config_error("labrelay-server", None, path=path)
        self.assertIn("cannot read", line)


class ClientProcessTests(TestCase):
    """The client process's login behaviour and its link to the server."""

    timeout = 60

    @async_test
    async def test_unknown_key_warns_and_starts(self):
        """An unknown key gives one warning line naming it, and the client
        still starts and registers its proxy."""
        server = await start_server(self)
        backend = echo_server(self)
        client = start_client(
            self, server.port, [("echo", backend, 0)], extra="gpu_count = 8\n"
        )
        await client.process.wait_for(
            r"warn\].*frpc\.ini.*\[common\] gpu_count: unknown key"
        )
        port = await client.proxy_port("echo")
        self.assertEqual(client.process.count(r"gpu_count"), 1)
        await echo_round_trip(self, port, size=1000)

    @async_test
    async def test_wrong_token_exits_1(self):
        """With login_fail_exit at its default (true) a refused login ends
        the client with status 1 and logs the server's error text."""
        server = await start_server(self)
        client = start_client(
            self, server.port, [("echo", 1, 0)], token="not-the-token"
        )
        code = await client.process.when_exited(15)
        self.assertEqual(code, 1, client.process.tail())
        self.assertIn(
            "token in login doesn't match token from configuration",
            client.process.output,
        )

    @async_test
    async def test_wrong_token_keeps_retrying(self):
        """With login_fail_exit = false a refused client keeps running and
        tries again."""
        server = await start_server(self)
        client = start_client(
            self,
            server.port,
            [("echo", 1, 0)],
            token="not-the-token",
            extra="login_fail_exit = false\n",
        )
        refused = (
            r"login to server failed: token in login doesn't match "
            r".*; retrying"
        )
        first = await client.process.wait_for(refused)
        await client.process.wait_for(refused, since=first.end())
        # the attempt count grows while logins are refused
        retry = (
            rf"connecting to server 127\.0\.0\.1:{server.port} again "
            rf"in \d+(\.\d)?s \(attempt {{}}\)$"
        )
        await client.process.wait_for(retry.format(2))
        await client.process.wait_for(retry.format(3), timeout=20)
        self.assertFalse(client.process.ended, client.process.tail())
        await client.process.stop()
        self.assertNotEqual(client.process.exit_code, 1)

    @async_test
    async def test_unreachable_server_lines(self):
        """A server that refuses connections: the error names its address,
        retries say when and which attempt, and Twisted's own chatter
        (factory objects, endpoint reprs) stays out of the log."""
        port = free_port()
        client = start_client(
            self, port, [("echo", 1, 0)], extra="login_fail_exit = false\n"
        )
        await client.process.wait_for(
            rf"login to server failed: cannot connect to 127\.0\.0\.1:{port}: "
            rf"Connection was refused"
        )
        await client.process.wait_for(
            rf"connecting to server 127\.0\.0\.1:{port} again in "
            rf"\d+(\.\d)?s \(attempt 2\)$",
            timeout=20,
        )
        for noise in ("Scheduling retry", "Starting factory", " at 0x"):
            self.assertNotIn(noise, client.process.output)

    @async_test
    async def test_bind_port_taken(self):
        """A server whose bind_port is already taken exits non-zero."""
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = write_config(
            self,
            "frps.ini",
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = {port}\ntoken = x\n",
        )
        process = await run(
            self,
            "labrelay-server",
            TWISTD + ["-n", "--pidfile=", "labrelay-server", "-c", path],
            timeout=15,
            path=os.path.dirname(path),
        )
        self.assertNotEqual(process.exit_code, 0, process.tail())
        self.assertIn(f"127.0.0.1:{port}", process.output)
        self.assertIn("Address already in use", process.output)

    @async_test
    async def test_sigterm_ends_both_promptly(self):
        """SIGTERM ends a client with a live link (TLS and tcp_mux, the
        defaults) and then the server within seconds, as systemd expects."""
        server = await start_server(self)
        backend = echo_server(self)
        client = start_client(self, server.port, [("echo", backend, 0)])
        port = await client.proxy_port("echo")
        await echo_round_trip(self, port, size=1000)
        for process in (client.process, server.process):
            process.signal("TERM")
            await process.when_exited(5)
            self.assertIn("Server Shut Down.", process.output)

    @async_test
    async def test_reconnect_after_server_restart(self):
        """After the server process is killed and started again on the same
        port, the client logs in again, re-registers its proxy, and the
        proxy relays again."""
        server = await start_server(self)
        backend = echo_server(self)
        remote = free_port()
        client = start_client(self, server.port, [("echo", backend, remote)])
        self.assertEqual(await client.proxy_port("echo"), remote)
        await echo_round_trip(self, remote, size=1000)

        mark = client.process.mark()
        server.process.signal("KILL")
        await server.process.when_exited()
        await client.process.wait_for(
            "connection to server lost; reconnecting", since=mark
        )
        await start_server(self, port=server.port, name="labrelay-server-2")
        await client.process.wait_for(
            r"login to server success", since=mark, timeout=30
        )
        self.assertEqual(await client.proxy_port("echo", since=mark), remote)
        await echo_round_trip(self, remote)
