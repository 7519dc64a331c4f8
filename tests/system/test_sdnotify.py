# -*- test-case-name: tests.system.test_sdnotify -*-
"""
systemd's notify protocol from a real ``twistd labrelay-server`` process
under a fake systemd: READY, RELOADING and STOPPING.
"""

import os

from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import (
    TWISTD,
    child_env,
    free_port,
    server_ini,
    spawn,
    write_config,
)
from ..support.systemd import FakeSystemd


class ProcessTests(TestCase):
    """``twistd -n labrelay-server`` under a fake systemd."""

    @async_test
    async def test_twistd_server_notifies(self):
        """The real server process sends READY=1 naming its bind port,
        RELOADING/READY on SIGHUP, and STOPPING=1 on SIGTERM."""
        systemd = FakeSystemd(self)
        port = free_port()
        path = write_config(self, "frps.ini", server_ini(port))
        process = spawn(
            self,
            "labrelay-server",
            TWISTD + ["-n", "--pidfile=", "labrelay-server", "-c", path],
            path=os.path.dirname(path),
            env=child_env(NOTIFY_SOCKET=systemd.path),
        )
        ready = await systemd.next(30)
        self.assertEqual(ready, f"READY=1\nSTATUS=listening: bind port {port}")
        process.signal("HUP")
        self.assertTrue((await systemd.next()).startswith("RELOADING=1\n"))
        self.assertEqual(await systemd.next(), "READY=1\nSTATUS=reloaded")
        process.signal("TERM")
        self.assertEqual(await systemd.next(), "STOPPING=1\nSTATUS=stopping")
        await process.when_exited()
        self.assertIn("Server Shut Down.", process.output)
