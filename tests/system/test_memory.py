# -*- test-case-name: tests.system.test_memory -*-
"""
Idle memory: a real ``twistd labrelay-server`` and ``labrelay-client`` load
an optional part (the HTTP vhost and h11, the dashboard, twisted.web,
prometheus_client, the admin API, snappy) only once a config key turns it
on.

Each process runs twistd through a small test-only wrapper that writes the
names in its ``sys.modules`` to a file when it gets SIGUSR2 (a signal
neither twistd nor labrelay uses), so the test reads what the process
really imported, after start-up, login and one proxy.
"""

import os
import signal
import sys

from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from ..support.harness import async_test, echo_server
from ..support.processes import (
    ClientProcess,
    child_env,
    client_ini,
    free_port,
    run,
    server_ini,
    spawn,
    write_config,
)
from .test_processes import echo_round_trip

#: twistd, with a SIGUSR2 handler that writes ``sys.modules`` (one name a
#: line) to the file named by $LABRELAY_TEST_MODULES_FILE.
PROBED_TWISTD = [
    sys.executable,
    "-c",
    "import os, signal, sys\n"
    "def dump(signum, frame):\n"
    "    path = os.environ['LABRELAY_TEST_MODULES_FILE']\n"
    "    with open(path + '.part', 'w') as f:\n"
    "        f.write('\\n'.join(sorted(sys.modules)))\n"
    "    os.replace(path + '.part', path)\n"
    "signal.signal(signal.SIGUSR2, dump)\n"
    "sys.argv[0] = 'twistd'\n"
    "from twisted.scripts.twistd import run\n"
    "run()\n",
]

#: Modules an idle server or client with a minimal config does not need,
#: each loaded only by the config key that turns its part on.
SERVER_OPTIONAL = {
    "h11": "vhost_http_port",
    "labrelay.server.vhost": "vhost_http_port",
    "labrelay.server.dashboard": "dashboard_port",
    "twisted.web": "dashboard_port",
    "labrelay.web": "dashboard_port",
    "prometheus_client": "enable_prometheus",
}
CLIENT_OPTIONAL = {
    "labrelay.client.admin": "admin_port",
    "twisted.web": "admin_port",
    "labrelay.web": "admin_port",
    "snappy": "use_compression",
}
#: Never wanted in a relay process, whatever its config.
NEVER = ["hypothesis", "twisted.conch", "twisted.trial.unittest"]


def probed_twistd(testcase, command, config_path):
    """Spawn ``twistd -n COMMAND -c CONFIG`` under :data:`PROBED_TWISTD`;
    returns the process and the file its module list goes to."""
    modules_file = os.path.join(os.path.dirname(config_path), "modules.txt")
    process = spawn(
        testcase,
        command,
        PROBED_TWISTD + ["-n", "--pidfile=", command, "-c", config_path],
        path=os.path.dirname(config_path),
        env=child_env(LABRELAY_TEST_MODULES_FILE=modules_file),
    )
    return process, modules_file


async def loaded_modules(process, modules_file, timeout=10.0) -> set:
    """Ask *process* for its ``sys.modules`` (SIGUSR2); wait for the file."""
    path = FilePath(modules_file)
    if path.exists():
        path.remove()
    os.kill(process.pid, signal.SIGUSR2)
    waited = 0.0
    while not path.exists():
        if waited >= timeout or process.ended:
            raise AssertionError(
                f"{process.name} wrote no module list; output:\n{process.tail()}"
            )
        d = defer.Deferred()
        reactor.callLater(0.05, d.callback, None)
        await d
        waited += 0.05
    return set(path.getContent().decode("ascii").split())


def loaded(modules: set, name: str) -> bool:
    """Whether *name* (a module or package) is among *modules*."""
    return name in modules or any(m.startswith(name + ".") for m in modules)


class IdleModulesTests(TestCase):
    """What an idle relay has imported, with and without its optional
    parts turned on."""

    timeout = 90

    async def start_pair(self, server_extra="", client_extra="", proxy_extra=""):
        """A probed server and a probed client with one tcp proxy to an
        echo backend, logged in; returns both module lists' sources and
        the proxy's remote port."""
        bind_port = free_port()
        server_path = write_config(
            self, "frps.ini", server_ini(bind_port, extra=server_extra)
        )
        server, server_modules = probed_twistd(self, "labrelay-server", server_path)
        await server.wait_for(rf"starting on {bind_port}$")
        backend = echo_server(self)
        text = client_ini(bind_port, [("echo", backend, 0)], extra=client_extra)
        client_path = write_config(self, "frpc.ini", text + proxy_extra)
        process, client_modules = probed_twistd(self, "labrelay-client", client_path)
        client = ClientProcess(process, client_path)
        port = await client.proxy_port("echo")
        return (server, server_modules), (process, client_modules), port

    @async_test
    async def test_minimal_config_leaves_optional_parts_out(self):
        """With a minimal config (one tcp proxy, TLS on, the defaults) and
        after a user connection through the tunnel, neither process has
        imported any optional part, nor test or SSH libraries."""
        server, client, port = await self.start_pair()
        await echo_round_trip(self, port, size=1000)
        server_modules = await loaded_modules(*server)
        client_modules = await loaded_modules(*client)
        self.assertIn("labrelay.server.service", server_modules)
        self.assertIn("labrelay.client.service", client_modules)
        for name in list(SERVER_OPTIONAL) + NEVER:
            self.assertFalse(
                loaded(server_modules, name),
                f"the idle server imported {name} without "
                f"{SERVER_OPTIONAL.get(name, 'any key asking for it')}",
            )
        for name in list(CLIENT_OPTIONAL) + NEVER:
            self.assertFalse(
                loaded(client_modules, name),
                f"the idle client imported {name} without "
                f"{CLIENT_OPTIONAL.get(name, 'any key asking for it')}",
            )

    @async_test
    async def test_keys_load_their_parts(self):
        """vhost_http_port, dashboard_port with enable_prometheus,
        admin_port and a proxy's use_compression (once a user connection
        goes through it) each load their part."""
        server, client, port = await self.start_pair(
            server_extra=(
                f"vhost_http_port = {free_port()}\n"
                f"dashboard_addr = 127.0.0.1\ndashboard_port = {free_port()}\n"
                "dashboard_user = admin\ndashboard_pwd = secret\n"
                "enable_prometheus = true\n"
            ),
            client_extra=(
                f"admin_addr = 127.0.0.1\nadmin_port = {free_port()}\n"
                "admin_user = admin\nadmin_pwd = secret\n"
            ),
            proxy_extra="use_compression = true\n",
        )
        await echo_round_trip(self, port, size=1000)
        server_modules = await loaded_modules(*server)
        client_modules = await loaded_modules(*client)
        for name in SERVER_OPTIONAL:
            self.assertTrue(loaded(server_modules, name), f"server: no {name}")
        for name in CLIENT_OPTIONAL:
            self.assertTrue(loaded(client_modules, name), f"client: no {name}")


class DropinTests(TestCase):
    """twistd imports every dropin on each start (and for ``--help``)."""

    timeout = 60

    @async_test
    async def test_dropin_imports_no_labrelay_module(self):
        """Importing labrelay's twistd dropin, as twistd does, loads no
        labrelay module: the taps are imported only when their command
        runs."""
        process = await run(
            self,
            "dropin import",
            [
                sys.executable,
                "-c",
                "import sys, twisted.plugins.labrelay_plugins\n"
                "print(' '.join(m for m in sorted(sys.modules)"
                " if m.split('.')[0] == 'labrelay') or 'none')",
            ],
        )
        self.assertEqual(process.exit_code, 0, process.tail())
        self.assertEqual(process.output.split(), ["none"])
