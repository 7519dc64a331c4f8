# -*- test-case-name: tests.system.test_stcp_interop -*-
"""
stcp across implementations, with real processes and an echo backend:
every combination of server, owner and visitor that the machine has.
labrelay's own programs always take every role; with ``LABRELAY_FRPC``
(a real frpc 0.70) the owner and the visitor are also real frpc on
labrelay's server, and with ``LABRELAY_FRPS`` labrelay's owner and
visitor also run on a real frps.  Each combination sends 64 KiB through
the visitor's port and checks it comes back byte-exact, and (labrelay's
server) that a visitor with a wrong sk is refused.
"""

import hashlib
import os

from twisted.trial.unittest import TestCase

from ..support.harness import async_test, connect_user, echo_server, within
from ..support.processes import start_server
from .stcp_processes import (
    binary,
    frpc_owner,
    frpc_visitor,
    labrelay_owner,
    labrelay_visitor,
    real_frps,
)


class StcpInteropTests(TestCase):
    timeout = 180

    async def echo_through(self, bind_port):
        user = await connect_user(self, bind_port)
        payload = os.urandom(64 * 1024)
        user.transport.write(payload)
        received = await within(user.wait_for(len(payload)), 30)
        self.assertEqual(
            hashlib.sha256(received).hexdigest(), hashlib.sha256(payload).hexdigest()
        )
        user.transport.loseConnection()
        await within(user.closed)

    async def visitor(self, kind, server_port, frpc=None, **kw):
        if kind == "frpc":
            return await frpc_visitor(self, frpc, server_port)
        return await labrelay_visitor(self, server_port, **kw)

    @async_test
    async def test_on_labrelay_server(self):
        """Owners and visitors, labrelay's and (LABRELAY_FRPC) frpc's, on
        labrelay's server."""
        frpc = binary("LABRELAY_FRPC")
        backend = echo_server(self)
        server = await start_server(self)
        await labrelay_owner(self, server.port, backend)
        kinds = ["labrelay"] + (["frpc"] if frpc else [])
        for kind in kinds:
            _, port = await self.visitor(kind, server.port, frpc, name=f"v-{kind}")
            await self.echo_through(port)
        if frpc:
            # a real frpc owner under another name: both visitors reach it
            other = await start_server(self, name="labrelay-server-2")
            await frpc_owner(self, frpc, other.port, backend)
            for kind in kinds:
                _, port = await self.visitor(kind, other.port, frpc, name=f"w-{kind}")
                await self.echo_through(port)
        bad, port = await labrelay_visitor(self, server.port, name="bad", sk="nope")
        user = await connect_user(self, port)
        await within(user.closed, 20)
        self.assertEqual(bytes(user.received), b"")
        await bad.wait_for(r"visitor connection of \[ssh\] auth failed")

    @async_test
    async def test_on_real_frps(self):
        """labrelay's owner and visitor on a real frps (LABRELAY_FRPS);
        without it, on labrelay's server with tcp_mux off."""
        frps = binary("LABRELAY_FRPS")
        backend = echo_server(self)
        if frps:
            _, port = await real_frps(self, frps)
            mux = None
        else:
            port = (await start_server(self, mux=False)).port
            mux = False
        await labrelay_owner(
            self, port, backend, mux=mux, proxy_extra="use_compression = true\n"
        )
        _, bind_port = await labrelay_visitor(
            self,
            port,
            mux=mux,
            extra="use_encryption = true\nuse_compression = true\n",
        )
        await self.echo_through(bind_port)
