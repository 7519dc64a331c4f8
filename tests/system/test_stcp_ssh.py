# -*- test-case-name: tests.system.test_stcp_ssh -*-
"""
SSH that is on no public port: a real sshd behind an stcp proxy of a real
``labrelay-client``, reached as ``ssh -p BIND_PORT user@127.0.0.1``
through a second client's stcp visitor, both on a real
``labrelay-server`` (twistd processes).  Every test of
:class:`~tests.system.test_ssh.SshMixin` runs through the visitor (hello,
32 MiB both ways, two visitors), and a visitor with the wrong sk gets
nothing while the right one still gets through.
"""

from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import run, start_server
from .stcp_processes import labrelay_owner, labrelay_visitor
from .test_ssh import SshMixin


class StcpSshMixin(SshMixin):
    visitor_extra = ""

    async def tunnel(self, clients=1):
        """sshd behind an stcp proxy; one visitor client per *clients*;
        returns the visitors' bind ports."""
        sshd_port = await self.start_sshd()
        self.server = await start_server(self, mux=self.mux)
        await labrelay_owner(self, self.server.port, sshd_port, mux=self.mux)
        await self.server.process.wait_for(r"proxy \[ssh\] \(stcp\) started at $")
        ports = []
        for i in range(clients):
            _, port = await labrelay_visitor(
                self,
                self.server.port,
                mux=self.mux,
                name=f"labrelay-visitor-{i}",
                extra=self.visitor_extra,
            )
            ports.append(port)
        return ports

    @async_test
    async def test_wrong_sk(self):
        """ssh through a visitor with a wrong sk fails; both sides log
        why; the server goes on serving the right key."""
        (good,) = await self.tunnel()
        bad_visitor, bad = await labrelay_visitor(
            self, self.server.port, mux=self.mux, name="bad-visitor", sk="wrong"
        )
        mark = self.server.process.mark()
        process = await run(self, "ssh", self.ssh_argv(bad, "true"), timeout=90)
        self.assertNotEqual(process.exit_code, 0, process.tail())
        await self.server.process.wait_for(
            r"register visitor conn error: visitor connection of \[ssh\] auth "
            r"failed \(wrong sk\)",
            since=mark,
        )
        await bad_visitor.wait_for(
            r"visitor \[ssh_visitor\]: start new visitor connection error: "
            r"visitor connection of \[ssh\] auth failed; closing"
        )
        done = await self.ssh_run(good, "echo still-serving")
        self.assertEqual(done.output.strip(), "still-serving")


class StcpSshTests(StcpSshMixin, TestCase):
    """tcp_mux at its default (on); the visitor encrypts and compresses."""

    visitor_extra = "use_encryption = true\nuse_compression = true\n"


class StcpSshNoMuxTests(StcpSshMixin, TestCase):
    """tcp_mux = false on every side; no visitor encryption."""

    mux = False
