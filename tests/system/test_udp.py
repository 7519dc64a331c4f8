"""
``type = udp`` with real processes: twistd labrelay-server and
labrelay-client (INI and TOML) relaying a real UDP echo, garbage on the
proxy's port, and, when ``LABRELAY_FRPC`` / ``LABRELAY_FRPS`` name frp
0.70 binaries, a real frpc on labrelay's server and a labrelay client on a
real frps.
"""

import os

from twisted.trial.unittest import TestCase

from ..support.harness import async_test
from ..support.processes import (
    TOKEN,
    free_port,
    spawn,
    start_server,
    twistd,
    write_config,
)
from ..support.udp import udp_echo_server, udp_user


def client_toml(server_port, local_port, remote_port):
    return (
        f'serverAddr = "127.0.0.1"\nserverPort = {server_port}\n'
        f'auth.token = "{TOKEN}"\nudpPacketSize = 1500\n'
        f'[[proxies]]\nname = "dns"\ntype = "udp"\nlocalIP = "127.0.0.1"\n'
        f"localPort = {local_port}\nremotePort = {remote_port}\n"
        "transport.useEncryption = true\ntransport.useCompression = true\n"
    )


class UdpProcessTests(TestCase):
    timeout = 120

    async def ask_all(self, remote):
        users = [udp_user(self) for _ in range(3)]
        for index, user in enumerate(users):
            payload = f"user {index}".encode() + os.urandom(500)
            self.assertEqual(await user.ask(remote, payload, tries=20), payload)
        for index, user in enumerate(users):
            for data, _ in user.received:
                self.assertTrue(data.startswith(f"user {index}".encode()))

    @async_test
    async def test_ini_client_and_garbage(self):
        server = await start_server(self)
        backend, _ = udp_echo_server(self)
        remote = free_port()
        client = twistd(
            self,
            "labrelay-client",
            write_config(
                self,
                "frpc.ini",
                f"[common]\nserver_addr = 127.0.0.1\nserver_port = {server.port}\n"
                f"token = {TOKEN}\n\n[dns]\ntype = udp\nlocal_ip = 127.0.0.1\n"
                f"local_port = {backend}\nremote_port = {remote}\n",
            ),
        )
        await client.wait_for(r"\[dns\] start proxy success")
        await self.ask_all(remote)
        noisy = udp_user(self)
        for size in (0, 3, 1500, 9000):
            noisy.transport.write(os.urandom(size), ("127.0.0.1", remote))
        await self.ask_all(remote)
        self.assertFalse(server.process.ended, "the server kept serving")

    @async_test
    async def test_toml_client(self):
        server = await start_server(self)
        backend, _ = udp_echo_server(self)
        remote = free_port()
        client = twistd(
            self,
            "labrelay-client",
            write_config(self, "frpc.toml", client_toml(server.port, backend, remote)),
        )
        await client.wait_for(r"\[dns\] start proxy success")
        await self.ask_all(remote)

    @async_test
    async def test_real_frp_when_available(self):
        """A real frpc on labrelay's server and a labrelay client on a real
        frps; without the binaries, labrelay on both sides (the same
        assertions)."""
        frpc = os.environ.get("LABRELAY_FRPC")
        frps = os.environ.get("LABRELAY_FRPS")
        backend, _ = udp_echo_server(self)
        server = await start_server(self)
        remote = free_port()
        config = write_config(
            self, "frpc.toml", client_toml(server.port, backend, remote)
        )
        if frpc:
            client = spawn(self, "frpc", [frpc, "-c", config])
        else:
            client = twistd(self, "labrelay-client", config)
        await client.wait_for(r"\[dns\] start proxy success")
        await self.ask_all(remote)
        if frps:
            port = free_port()
            frps_config = write_config(
                self,
                "frps.toml",
                f'bindAddr = "127.0.0.1"\nbindPort = {port}\nauth.token = "{TOKEN}"\n',
            )
            real = spawn(self, "frps", [frps, "-c", frps_config])
            await real.wait_for(r"frps started successfully")
            remote2 = free_port()
            client2 = twistd(
                self,
                "labrelay-client",
                write_config(self, "frpc.toml", client_toml(port, backend, remote2)),
                name="labrelay-client-on-frps",
            )
            await client2.wait_for(r"\[dns\] start proxy success")
            await self.ask_all(remote2)
