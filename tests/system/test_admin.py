# -*- test-case-name: tests.system.test_admin -*-
"""
The client's tap and ``labrelay-client`` command as real processes: status
and stop of a twistd client through its admin API, and the exit status
systemd sees.
"""

import signal
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from labrelay.client.admin import STOP_EXIT_CODE

from ..support.harness import async_test, echo_server
from ..support.processes import (
    REPO_ROOT,
    child_env,
    client_ini,
    free_port,
    run,
    start_server,
    twistd,
)


class ProcessTests(TestCase):
    """The tap and the command as real processes."""

    timeout = 60

    @async_test
    async def test_twistd_client_status_and_stop(self):
        """A twistd client with admin_port answers the command's status,
        and stop ends the process with STOP_EXIT_CODE (not 0, so systemd's
        Restart=on-failure restarts it; it was 0 before)."""
        server = await start_server(self)
        backend = echo_server(self)
        port = free_port()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child("frpc.ini").path
        with open(path, "w") as f:
            f.write(
                client_ini(
                    server.port, [("echo", backend, 0)], extra=f"admin_port = {port}\n"
                )
            )
        process = twistd(self, "labrelay-client", path)
        await process.wait_for(r"\[echo\] start proxy success")
        command = [sys.executable, "-m", "labrelay.client.cli"]
        status = await run(
            self,
            "status",
            command + ["status", "-c", path],
            path=REPO_ROOT,
            env=child_env(),
        )
        self.assertEqual(status.exit_code, 0, status.tail())
        self.assertIn("running", status.output)
        stop = await run(
            self,
            "stop",
            command + ["stop", "-c", path],
            path=REPO_ROOT,
            env=child_env(),
        )
        self.assertEqual(stop.exit_code, 0, stop.tail())
        self.assertEqual(await process.when_exited(10), STOP_EXIT_CODE, process.tail())

    @async_test
    async def test_sigterm_is_a_clean_exit(self):
        """Stopped by SIGTERM (systemctl stop), the client ends as twistd
        does, by re-raising SIGTERM, which systemd counts as a clean exit:
        Restart=on-failure does not restart it (unlike after /api/stop)."""
        server = await start_server(self)
        backend = echo_server(self)
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child("frpc.ini").path
        with open(path, "w") as f:
            f.write(
                client_ini(
                    server.port,
                    [("echo", backend, 0)],
                    extra=f"admin_port = {free_port()}\n",
                )
            )
        process = twistd(self, "labrelay-client", path)
        await process.wait_for(r"\[echo\] start proxy success")
        process.signal("TERM")
        await process.when_exited(10)
        self.assertEqual(
            process.describe_exit(), f"signal {int(signal.SIGTERM)}", process.tail()
        )
