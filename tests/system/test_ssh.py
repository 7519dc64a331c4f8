# -*- test-case-name: tests.system.test_ssh -*-
"""
The scenario labrelay exists for: OpenSSH on a private server, reached as
``ssh -p REMOTE_PORT user@relay`` through a real ``labrelay-client`` and a
real ``labrelay-server`` process.

sshd, ssh and ssh-keygen must be installed (``.ci/run`` installs
openssh-server); without them these tests fail, they never skip.
"""

import getpass
import hashlib
import os
import shutil
import socket

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import free_port, run, spawn, start_client, start_server

SSHD = "/usr/sbin/sshd"
PAYLOAD_SIZE = 32 * 1024 * 1024


def _program(name):
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"{name} is not installed; the ssh tests need OpenSSH "
            "(.ci/run installs openssh-server and openssh-client)"
        )
    return path


class SshMixin:
    """OpenSSH through labrelay; ``mux`` None leaves tcp_mux at its default."""

    mux = None
    #: the format of both config files (tests.support.processes.in_format)
    config_format = "ini"
    timeout = 120

    def setUp(self):
        if not os.access(SSHD, os.X_OK):
            self.fail(
                f"{SSHD} is missing; the ssh tests need OpenSSH "
                "(.ci/run installs openssh-server)"
            )
        self.ssh = _program("ssh")
        self.ssh_keygen = _program("ssh-keygen")
        self.user = "root" if os.geteuid() == 0 else getpass.getuser()
        self.dir = FilePath(os.path.abspath(self.mktemp()))
        self.dir.makedirs()

    async def keygen(self, name):
        """Generate an ed25519 key pair in the test's directory."""
        key = self.dir.child(name).path
        process = await run(
            self,
            "ssh-keygen",
            [
                self.ssh_keygen,
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "labrelay-test",
                "-f",
                key,
            ],
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        return key

    async def start_sshd(self):
        """A real sshd on 127.0.0.1 accepting a freshly generated key;
        returns its port."""
        host_key = await self.keygen("host_key")
        self.client_key = await self.keygen("client_key")
        authorized = self.dir.child("authorized_keys")
        authorized.setContent(FilePath(self.client_key + ".pub").getContent())
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            # Debian's sshd insists on its privilege separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        port = free_port()
        config = self.dir.child("sshd_config")
        config.setContent(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized.path}",
                    f"PidFile {self.dir.child('sshd.pid').path}",
                    "UsePAM no",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin " + ("yes" if os.geteuid() == 0 else "no"),
                    "",
                ]
            ).encode()
        )
        sshd = spawn(
            self, "sshd", [SSHD, "-D", "-e", "-f", config.path], path=self.dir.path
        )
        await sshd.wait_for(rf"Server listening on 127\.0\.0\.1 port {port}\.")
        return port

    def ssh_argv(self, port, command):
        return [
            self.ssh,
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "-i",
            self.client_key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            f"{self.user}@127.0.0.1",
            command,
        ]

    async def ssh_run(self, port, command, **kwargs):
        """Run ``ssh ... COMMAND`` through remote *port*; assert it
        succeeds; return its ProcessOutput."""
        process = await run(
            self, "ssh", self.ssh_argv(port, command), timeout=90, **kwargs
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        return process

    async def tunnel(self, clients=1):
        """sshd behind *clients* labrelay clients of one labrelay server;
        returns the remote ports, one per client."""
        sshd_port = await self.start_sshd()
        server = await start_server(self, mux=self.mux, fmt=self.config_format)
        ports = []
        for i in range(clients):
            name = f"ssh{i}"
            remote = free_port()
            client = start_client(
                self,
                server.port,
                [(name, sshd_port, remote)],
                mux=self.mux,
                name=f"labrelay-client-{i}",
                fmt=self.config_format,
            )
            self.assertEqual(await client.proxy_port(name), remote)
            await server.process.wait_for(
                rf"proxy \[{name}\] \(tcp\) started at :{remote}$"
            )
            ports.append(remote)
        return ports

    @async_test
    async def test_hello(self):
        """``ssh -p REMOTE_PORT user@relay 'echo hello-from-$(hostname)'``
        lands on the private server."""
        (port,) = await self.tunnel()
        process = await self.ssh_run(port, "echo hello-from-$(hostname)")
        self.assertEqual(process.output.strip(), f"hello-from-{socket.gethostname()}")

    @async_test
    async def test_cat_32_mib(self):
        """32 MiB of random bytes piped through ``ssh ... cat`` come back
        byte-exact."""
        (port,) = await self.tunnel()
        payload = os.urandom(PAYLOAD_SIZE)
        process = await self.ssh_run(
            port, "cat", stdin_data=payload, binary_stdout=True
        )
        self.assertEqual(process.stdout_bytes, PAYLOAD_SIZE)
        self.assertEqual(
            process.stdout_sha256.hexdigest(), hashlib.sha256(payload).hexdigest()
        )

    @async_test
    async def test_sha256sum_of_stdin(self):
        """``ssh ... sha256sum`` of a 32 MiB file on stdin prints its digest:
        the end of stdin must reach the remote side."""
        (port,) = await self.tunnel()
        data = self.dir.child("payload")
        payload = os.urandom(PAYLOAD_SIZE)
        data.setContent(payload)
        with open(data.path, "rb") as f:
            process = await self.ssh_run(port, "sha256sum", stdin_fd=f.fileno())
        self.assertEqual(process.output.split()[0], hashlib.sha256(payload).hexdigest())

    @async_test
    async def test_two_clients(self):
        """Two labrelay clients with their own remote ports on one server
        both reach sshd."""
        ports = await self.tunnel(clients=2)
        self.assertNotEqual(ports[0], ports[1])
        for port in ports:
            process = await self.ssh_run(port, f"echo via-{port}")
            self.assertEqual(process.output.strip(), f"via-{port}")


class SshDefaultMuxTests(SshMixin, TestCase):
    """tcp_mux at its default (on): no tcp_mux key in either file."""


class SshNoMuxTests(SshMixin, TestCase):
    """tcp_mux = false on both sides."""

    mux = False


class SshTomlTests(SshMixin, TestCase):
    """The same frps.ini and frpc.ini converted to frp's v1 frps.toml and
    frpc.toml (``labrelay-server convert``, ``labrelay-client convert``)."""

    config_format = "toml"
