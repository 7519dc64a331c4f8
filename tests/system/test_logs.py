# -*- test-case-name: tests.system.test_logs -*-
"""
The log of a real ``twistd labrelay-server`` process: forged fields sent
by a peer reach its log file as one escaped line.
"""

import os

from twisted.trial.unittest import TestCase

from labrelay.protocol import messages
from labrelay.protocol.framing import encode_message

from ..support.harness import async_test, connect_user
from ..support.log_lines import ESCAPED, FORGED, assert_one_line_each
from ..support.processes import TWISTD, free_port, server_ini, spawn, write_config


class ProcessLogTests(TestCase):
    """The same through a real twistd with --logfile=- (twistd's own text
    observer), where it used to be written raw."""

    timeout = 60

    @async_test
    async def test_twistd_logfile_observer(self):
        """A wrong-token Login's version shows as one escaped line on the
        output of ``twistd --logfile=- labrelay-server``."""
        port = free_port()
        path = write_config(self, "frps.ini", server_ini(port, mux=False))
        process = spawn(
            self,
            "labrelay-server",
            TWISTD + ["-n", "--pidfile=", "--logfile=-", "labrelay-server", "-c", path],
            path=os.path.dirname(path),
        )
        await process.wait_for(rf"starting on {port}$")
        peer = await connect_user(self, port)
        peer.transport.write(
            encode_message(
                messages.Login(
                    version="0.51.3" + FORGED, privilege_key="0" * 32, timestamp=1
                )
            )
        )
        await process.wait_for(r"wrong token")
        self.assertIn(f"version=0.51.3{ESCAPED}", process.output)
        assert_one_line_each(self, process.output)
