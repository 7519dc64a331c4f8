# -*- test-case-name: tests.system.test_daemon_mode -*-
"""
``twistd labrelay-server`` / ``labrelay-client`` without ``-n``, as a user
who forgot it (or an init script) runs them: a start-up failure is one line
and exit status 1 from the command itself, with no pid file left behind,
and a started daemon logs to ``twistd.log``.
"""

import os
import signal
import socket

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import TOKEN, TWISTD, free_port, run, write_config

#: Bound on how long a started daemon may take to show a log line.
START_BOUND = 20


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _until(predicate, seconds, what):
    """Poll *predicate* every 50 ms until true; fail after *seconds*."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not within {seconds}s: {what}")


def _text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class DaemonModeTests(TestCase):
    timeout = 90

    def taken_port(self) -> int:
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        return taken.getsockname()[1]

    async def daemon(self, command, text):
        """Run ``twistd --pidfile=twistd.pid COMMAND -c INI`` (daemonising)
        in a fresh directory; return (the foreground process, directory)."""
        path = write_config(self, "daemon.ini", text)
        directory = os.path.dirname(path)
        pidfile = os.path.join(directory, "twistd.pid")
        self.addCleanup(self._kill_daemon, pidfile)
        process = await run(
            self,
            command,
            TWISTD + [f"--pidfile={pidfile}", command, "-c", path],
            timeout=30,
            path=directory,
        )
        return process, directory

    async def _kill_daemon(self, pidfile):
        text = _text(pidfile).strip()
        if not text:
            return
        pid = int(text)
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            try:
                await _until(lambda: not _alive(pid), 10, "daemon ends")
            except AssertionError:
                os.kill(pid, signal.SIGKILL)

    @async_test
    async def test_bind_port_taken_exits_1_with_one_line(self):
        port = self.taken_port()
        process, directory = await self.daemon(
            "labrelay-server",
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = {port}\ntoken = {TOKEN}\n",
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        lines = [line for line in process.output.splitlines() if line]
        self.assertEqual(
            lines,
            [
                f"labrelay-server: cannot listen on 127.0.0.1:{port}: "
                f"[Errno 98] Address already in use"
            ],
            process.output,
        )
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.pid")))

    @async_test
    async def test_vhost_port_taken_exits_1(self):
        port = self.taken_port()
        process, _ = await self.daemon(
            "labrelay-server",
            "[common]\nbind_addr = 127.0.0.1\n"
            f"bind_port = {free_port()}\nproxy_bind_addr = 127.0.0.1\n"
            f"vhost_http_port = {port}\ntoken = {TOKEN}\n",
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", process.output)

    @async_test
    async def test_client_admin_port_taken_exits_1(self):
        port = self.taken_port()
        process, _ = await self.daemon(
            "labrelay-client",
            "[common]\nserver_addr = 127.0.0.1\n"
            f"server_port = {free_port()}\ntoken = {TOKEN}\n"
            f"admin_addr = 127.0.0.1\nadmin_port = {port}\n",
        )
        self.assertEqual(process.exit_code, 1, process.tail())
        self.assertIn(f"127.0.0.1:{port}", process.output)
        self.assertIn("Address already in use", process.output)

    @async_test
    async def test_started_daemon_logs_to_twistd_log(self):
        port = free_port()
        process, directory = await self.daemon(
            "labrelay-server",
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = {port}\ntoken = {TOKEN}\n",
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        log = os.path.join(directory, "twistd.log")
        await _until(
            lambda: f"starting on {port}" in _text(log),
            START_BOUND,
            f"'starting on {port}' in twistd.log",
        )
        pid = int(_text(os.path.join(directory, "twistd.pid")))
        self.assertTrue(_alive(pid))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        os.kill(pid, signal.SIGTERM)
        await _until(lambda: not _alive(pid), 10, "daemon ends on SIGTERM")
        self.assertIn("Server Shut Down.", _text(log))

    @async_test
    async def test_log_file_setting_wins_in_daemon_mode(self):
        port = free_port()
        process, directory = await self.daemon(
            "labrelay-server",
            "[common]\nbind_addr = 127.0.0.1\n"
            f"bind_port = {port}\ntoken = {TOKEN}\nlog_file = relay.log\n",
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        log = os.path.join(directory, "relay.log")
        await _until(
            lambda: f"starting on {port}" in _text(log),
            START_BOUND,
            "start-up line in log_file",
        )
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.log")))
