# -*- test-case-name: tests.system.test_tcpmux_ssh -*-
"""
Many SSH servers on one port: two real sshd behind ``type = tcpmux``
proxies of a real ``labrelay-client``, both reached through one
``tcpmux_httpconnect_port`` of a real ``labrelay-server``, chosen by the
host name ssh is given, with ``ssh -o ProxyCommand`` speaking HTTP
CONNECT (OpenBSD ``nc.openbsd -X connect`` when installed, else
:mod:`tests.support.connect_proxy`).  The config files are INI and TOML.
"""

import shutil
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import free_port, run, start_client, start_server
from .test_ssh import SshMixin

CONNECT_PROXY = FilePath(__file__).parent().sibling("support").child("connect_proxy.py")


def proxy_command(port: int) -> str:
    nc = shutil.which("nc.openbsd")  # other netcats have no -X connect
    if nc is not None:
        return f"{nc} -X connect -x 127.0.0.1:{port} %h %p"
    return f"{sys.executable} {CONNECT_PROXY.path} 127.0.0.1 {port} %h %p"


class TcpMuxSshMixin:
    """sshd, keys and ssh's argv as tests.system.test_ssh makes them (its
    helpers only, not its tests)."""

    config_format = "ini"
    timeout = 120
    setUp = SshMixin.setUp
    keygen = SshMixin.keygen
    start_sshd = SshMixin.start_sshd
    ssh_argv = SshMixin.ssh_argv

    async def two_sshd_on_one_port(self):
        first = await self.start_sshd()
        self.keys = {"gpu1": self.client_key}
        base, self.dir = self.dir, self.dir.child("second")
        self.dir.makedirs()
        second = await self.start_sshd()
        self.keys["gpu2"] = self.client_key
        self.dir = base
        tcpmux = free_port()
        server = await start_server(
            self,
            extra=f"tcpmux_httpconnect_port = {tcpmux}\n"
            "subdomain_host = lab.example.test\n",
            fmt=self.config_format,
        )
        sections = (
            "\n[gpu1-ssh]\ntype = tcpmux\nmultiplexer = httpconnect\n"
            f"local_port = {first}\ncustom_domains = gpu1.lab.internal\n"
            "\n[gpu2-ssh]\ntype = tcpmux\nmultiplexer = httpconnect\n"
            f"local_port = {second}\nsubdomain = gpu2\n"
        )
        client = start_client(
            self, server.port, [], extra=sections, fmt=self.config_format
        )
        await client.process.wait_for(r"\[gpu1-ssh\] start proxy success")
        await client.process.wait_for(r"\[gpu2-ssh\] start proxy success")
        return tcpmux, first, second

    async def ssh_via(self, tcpmux, host, command):
        self.client_key = self.keys[host.split(".")[0]]
        argv = self.ssh_argv(22, command)
        argv[-2] = f"{self.user}@{host}"
        argv[1:1] = ["-o", f"ProxyCommand={proxy_command(tcpmux)}"]
        process = await run(self, "ssh", argv, timeout=90)
        self.assertEqual(process.exit_code, 0, process.tail())
        return process.output.strip()

    @async_test
    async def test_each_name_reaches_its_own_sshd(self):
        tcpmux, first, second = await self.two_sshd_on_one_port()
        # SSH_CONNECTION ends with the server's own address and port
        seen = await self.ssh_via(tcpmux, "gpu1.lab.internal", "echo $SSH_CONNECTION")
        self.assertEqual(seen.split()[-1], str(first))
        seen = await self.ssh_via(
            tcpmux, "gpu2.lab.example.test", "echo $SSH_CONNECTION"
        )
        self.assertEqual(seen.split()[-1], str(second))

    @async_test
    async def test_unknown_name_is_refused(self):
        tcpmux, _, _ = await self.two_sshd_on_one_port()
        argv = self.ssh_argv(22, "true")
        argv[-2] = f"{self.user}@gpu9.lab.internal"
        argv[1:1] = ["-o", f"ProxyCommand={proxy_command(tcpmux)}"]
        process = await run(self, "ssh", argv, timeout=90)
        self.assertNotEqual(process.exit_code, 0)


class TcpMuxSshIni(TcpMuxSshMixin, TestCase):
    pass


class TcpMuxSshToml(TcpMuxSshMixin, TestCase):
    config_format = "toml"
