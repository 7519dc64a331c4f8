"""
https and tcpmux against real frp 0.70, when the binaries are given:
``LABRELAY_FRPC`` (a real frpc registers both types on labrelay's server)
and ``LABRELAY_FRPS`` (labrelay's client registers both on a real frps).
In each direction a TLS backend with its own certificate is reached by
server name, and an echo service by CONNECT host, through the relay.

The test classes exist only when their variable names an executable
(nothing here needs frp installed).
"""

import os

from twisted.trial.unittest import TestCase

from labrelay.server.https_proxy import UNRECOGNIZED_NAME_ALERT
from labrelay.server.tcpmux import CONNECT_OK
from tests.integration.test_https_vhost import curl
from tests.integration.test_tcpmux import connect, until
from tests.support.harness import TOKEN, Client, async_test, echo_server, within
from tests.support.named_ports import (
    SUBDOMAIN_HOST,
    NamedRelay,
    ca_file,
    client_hello,
    named_proxy,
    raw_user,
    tls_backend,
)
from tests.support.processes import free_port, spawn, write_config

FRPC = os.environ.get("LABRELAY_FRPC", "")
FRPS = os.environ.get("LABRELAY_FRPS", "")

TB_HOST = "tb.gpu1.example.test"
SSH_HOST = "gpu1.lab.internal"


def frpc_toml(server_port, tls_port, echo_port) -> str:
    return f"""serverAddr = "127.0.0.1"
serverPort = {server_port}
auth.token = "{TOKEN}"
loginFailExit = true

[[proxies]]
name = "tensorboard"
type = "https"
localPort = {tls_port}
customDomains = ["{TB_HOST}"]

[[proxies]]
name = "ssh-gpu1"
type = "tcpmux"
multiplexer = "httpconnect"
localPort = {echo_port}
customDomains = ["{SSH_HOST}"]
"""


class _Checks:
    async def check_paths(self, https_port, tcpmux_port):
        code, out, err = await curl(self, TB_HOST, https_port, ca_file(self))
        self.assertEqual((code, out), (0, b"tensorboard\n"), err)
        unknown = await raw_user(self, https_port)
        unknown.transport.write(client_hello("nobody.example.test"))
        self.assertEqual(await within(unknown.closed), UNRECOGNIZED_NAME_ALERT)
        user = await raw_user(self, tcpmux_port)
        # frps drops bytes sent along with the CONNECT head (its bufio
        # reader keeps them), so the client waits for the answer first,
        # as ssh's ProxyCommand does
        user.transport.write(connect(f"{SSH_HOST}:22"))
        self.assertEqual(await until(user, len(CONNECT_OK)), CONNECT_OK)
        user.transport.write(b"ping")
        expected = CONNECT_OK + b"ping"
        self.assertEqual(await until(user, len(expected)), expected)


if FRPC and os.access(FRPC, os.X_OK):

    class RealFrpcOnLabrelay(_Checks, TestCase):
        timeout = 60

        @async_test
        async def test_https_and_tcpmux(self):
            relay = await NamedRelay(self).start()
            tls_port = tls_backend(self, [TB_HOST])
            echo = echo_server(self)
            path = write_config(
                self, "frpc.toml", frpc_toml(relay.port, tls_port, echo)
            )
            frpc = spawn(self, "frpc", [FRPC, "-c", path])
            for name in ("tensorboard", "ssh-gpu1"):
                await frpc.wait_for(rf"\[{name}\] start proxy success")
            await self.check_paths(relay.https_port, relay.tcpmux_port)


if FRPS and os.access(FRPS, os.X_OK):

    class LabrelayOnRealFrps(_Checks, TestCase):
        timeout = 60

        @async_test
        async def test_https_and_tcpmux(self):
            port, https_port, tcpmux_port = free_port(), free_port(), free_port()
            path = write_config(
                self,
                "frps.toml",
                f'bindAddr = "127.0.0.1"\nbindPort = {port}\n'
                f'proxyBindAddr = "127.0.0.1"\n'
                f'auth.token = "{TOKEN}"\nvhostHTTPSPort = {https_port}\n'
                f"tcpmuxHTTPConnectPort = {tcpmux_port}\n"
                f'subDomainHost = "{SUBDOMAIN_HOST}"\n',
            )
            frps = spawn(self, "frps", [FRPS, "-c", path])
            await frps.wait_for(r"frps started successfully")
            tls_port = tls_backend(self, [TB_HOST])
            echo = echo_server(self)
            proxies = named_proxy(
                "tensorboard", "https", tls_port, custom_domains=TB_HOST
            ) + named_proxy(
                "ssh-gpu1",
                "tcpmux",
                echo,
                multiplexer="httpconnect",
                custom_domains=SSH_HOST,
            )
            client = await Client(self, port, proxies).start()
            for name in ("tensorboard", "ssh-gpu1"):
                await within(client.client.when_proxy_status(name, "running"))
            await self.check_paths(https_port, tcpmux_port)
