# -*- test-case-name: tests.system.test_jupyter -*-
"""
A real Jupyter server behind a labrelay ``type = http`` proxy: the REST
API, a kernel started through the vhost, and code run over the kernel's
WebSocket channels through the vhost.

Needs the ``test`` extra (jupyter_server, ipykernel, websocket-client).
"""

import importlib.util
import json
import os
import re
import secrets
import shlex
import signal
import sys
import time
import uuid

from twisted.internet import defer, error, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from ..support import paths
from ..support.harness import async_test, within
from ..support.vhost import (
    SUBDOMAIN_HOST,
    VhostRelay,
    http_proxy,
    http_user,
    start_client,
)

HOST = f"jupyter.{SUBDOMAIN_HOST}"
NEEDED = ("jupyter_server", "ipykernel", "websocket")

#: Bounds (seconds).
JUPYTER_START = 60
KERNEL_RESULT = 60
JUPYTER_STOP = 20


class JupyterProcess(ProcessProtocol):
    """``python -m jupyter_server`` as a child; fires :attr:`running` with
    the port from its "is running at" line."""

    def __init__(self):
        self.running = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = []

    def outReceived(self, data):
        self._scan(data)

    def errReceived(self, data):
        self._scan(data)

    def _scan(self, data):
        text = data.decode("utf-8", "replace")
        self.output.append(text)
        if self.running.called:
            return
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", "".join(self.output))
        if match:
            self.running.callback(int(match.group(1)))

    def token(self) -> str:
        """The login token from the URL Jupyter printed."""
        match = re.search(r"\?token=([0-9a-f]+)", "".join(self.output))
        return match.group(1) if match else ""

    async def listening(self) -> int:
        """
        The port, once it accepts connections: Jupyter Server logs its
        "is running at" URL before its socket listens, so the line alone
        lets a request in too early.
        """
        port = await self.running
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1)
        while True:
            try:
                connection = await endpoint.connect(Factory.forProtocol(Protocol))
            except error.ConnectError:
                if self.ended.called:
                    raise
                await deferLater(reactor, 0.05)
                continue
            connection.transport.abortConnection()
            return port

    def processEnded(self, reason):
        if not self.running.called:
            self.running.errback(
                AssertionError(
                    "jupyter_server exited before serving:\n"
                    + "".join(self.output)[-3000:]
                )
            )
        self.ended.callback(None)


def jupyter_home(testcase):
    """A fresh directory and an environment that keeps Jupyter's config,
    data and runtime files in it: (root, env)."""
    root = testcase.mktemp()
    os.makedirs(root)
    env = dict(os.environ)
    for name in (
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
        "IPYTHONDIR",
    ):
        env[name] = os.path.abspath(os.path.join(root, "." + name.lower()))
    env["PYTHONUNBUFFERED"] = "1"
    return root, env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute_over_websocket(
    port: int, kernel_id: str, token: str, code: str, cookie: str = ""
) -> dict:
    """
    (In a thread.) Open the kernel's channels WebSocket through the vhost at
    127.0.0.1:*port* with Host ``HOST``, send an execute_request for *code*
    (Jupyter messaging v5.3) and return the execute_result's content.
    """
    import websocket

    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels"
    if token:
        url += f"?token={token}"
    ws = websocket.create_connection(
        url,
        timeout=KERNEL_RESULT,
        host=HOST,
        origin=f"http://{HOST}",
        cookie=cookie or None,
    )
    try:
        session = uuid.uuid4().hex
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "labrelay-test",
                        "session": session,
                        "msg_type": "execute_request",
                        "version": "5.3",
                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "buffers": [],
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        deadline = time.monotonic() + KERNEL_RESULT
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message.get("msg_type") or message["header"]["msg_type"]
            if kind == "execute_result":
                return message["content"]
            if kind == "error":
                raise AssertionError(f"the kernel failed: {message['content']}")
        raise AssertionError(f"no execute_result within {KERNEL_RESULT}s")
    finally:
        ws.close()


async def stop_jupyter(process, transport):
    """SIGTERM (Jupyter shuts its kernels down), then SIGKILL."""
    if process.ended.called:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            transport.signalProcess(sig)
        except error.ProcessExitedAlready:
            return
        try:
            await within(process.ended, JUPYTER_STOP)
            return
        except defer.TimeoutError:
            continue


class JupyterThroughVhostTests(TestCase):
    #: the format of the relay's and the client's configs
    #: (tests.support.formats.in_format)
    config_format = "ini"
    timeout = 240

    def setUp(self):
        missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
        if missing:
            self.fail(
                f"{', '.join(missing)} not installed: this test needs "
                f"the test extra, e.g. pip install -e '.[test]' "
                f"(jupyter_server, ipykernel, websocket-client)"
            )

    async def start_jupyter(self, token: str) -> int:
        root, env = jupyter_home(self)
        process = JupyterProcess()
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--ServerApp.port={free_port()}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={os.path.abspath(root)}",
            # requests arrive with Host jupyter.web.example.test
            "--ServerApp.allow_remote_access=True",
            "--ServerApp.port_retries=0",
            "--allow-root",
        ]
        transport = reactor.spawnProcess(process, sys.executable, args, env=env)
        self.addCleanup(lambda: defer.ensureDeferred(stop_jupyter(process, transport)))
        return await within(defer.ensureDeferred(process.listening()), JUPYTER_START)

    @async_test
    async def test_kernel_through_vhost(self):
        """Jupyter's API and a kernel's WebSocket work through the vhost:
        1+1 evaluates to 2."""
        token = secrets.token_hex(16)
        jupyter_port = await self.start_jupyter(token)
        relay = await VhostRelay(self, fmt=self.config_format).start()
        await start_client(
            self,
            relay,
            http_proxy("jupyter", jupyter_port, subdomain="jupyter"),
            ["jupyter"],
            fmt=self.config_format,
        )
        self.assertEqual(
            (relay.config.format, relay.config.source),
            (self.config_format, f"frps.{self.config_format}"),
        )
        auth = [("Authorization", f"token {token}")]
        user = await http_user(self, relay.http_port)

        reply = await user.request(HOST, "/api/status", headers=auth)
        self.assertEqual(reply.status, 200, reply.body)
        self.assertIn("started", reply.json())

        reply = await user.request(
            HOST,
            "/api/kernels",
            method="POST",
            headers=auth + [("Content-Type", "application/json")],
            body=json.dumps({"name": "python3"}).encode(),
        )
        self.assertEqual(reply.status, 201, reply.body)
        kernel_id = reply.json()["id"]

        content = await within(
            deferToThread(
                execute_over_websocket, relay.http_port, kernel_id, token, "1+1"
            ),
            KERNEL_RESULT + 10,
        )
        self.assertEqual(content["data"]["text/plain"], "2")

        reply = await user.request(
            HOST, f"/api/kernels/{kernel_id}", method="DELETE", headers=auth
        )
        self.assertEqual(reply.status, 204, reply.body)
        reply = await user.request(HOST, "/api/kernels", headers=auth)
        self.assertEqual(reply.json(), [])


class JupyterThroughVhostTomlTests(JupyterThroughVhostTests):
    """The same, with the relay's frps.ini and the client's frpc.ini
    converted to frp's v1 TOML."""

    config_format = "toml"


README = paths.REPO_ROOT.child("README.rst")


def readme_command(program: str) -> list:
    """The argv of the README line that runs *program* (``jupyter lab``)."""
    for line in README.getContent().decode("utf-8").splitlines():
        if line.strip().startswith(program + " "):
            return shlex.split(line.strip())
    raise AssertionError(f"README.rst shows no '{program} ...' command")


def login_cookie(reply) -> str:
    """The Cookie header a browser sends after *reply* (Jupyter's login by
    token sets its session cookies)."""
    cookie = "; ".join(
        value.decode("latin-1").split(";")[0]
        for name, value in reply.raw_headers
        if name.lower() == b"set-cookie"
    )
    assert cookie, reply.raw_headers
    return cookie


class JupyterLabAsReadmeTests(TestCase):
    """Jupyter Lab started exactly as README.rst says (only the port is
    changed, to a free one), reached by name through the vhost; and the
    403 the README's flag avoids."""

    timeout = 240

    def setUp(self):
        missing = [
            name
            for name in NEEDED + ("jupyterlab",)
            if importlib.util.find_spec(name) is None
        ]
        if missing:
            self.fail(
                f"{', '.join(missing)} not installed: this test needs "
                f"the test extra (pip install '.[test]')"
            )

    async def start_lab(self, argv) -> JupyterProcess:
        root, env = jupyter_home(self)
        self.assertEqual(argv[:2], ["jupyter", "lab"])
        port = free_port()
        args = [sys.executable, "-m", "jupyter", "lab"] + [
            f"--port={port}" if arg.startswith("--port=") else arg for arg in argv[2:]
        ]
        self.assertIn(f"--port={port}", args)
        if os.geteuid() == 0:
            args.append("--allow-root")  # as the README says for root
        process = JupyterProcess()
        transport = reactor.spawnProcess(
            process, sys.executable, args, env=env, path=root
        )
        self.addCleanup(lambda: defer.ensureDeferred(stop_jupyter(process, transport)))
        process.port = await within(
            defer.ensureDeferred(process.listening()), JUPYTER_START
        )
        return process

    async def relay_to(self, port, **options):
        relay = await VhostRelay(self).start()
        await start_client(
            self,
            relay,
            http_proxy("jupyter", port, subdomain="jupyter", **options),
            ["jupyter"],
        )
        return relay

    @async_test
    async def test_readme_command_works_by_name(self):
        """The Lab page and a kernel's websocket (as a browser opens it:
        logged in by cookie, with an Origin) work through the vhost for
        Jupyter started with the README's command."""
        lab = await self.start_lab(readme_command("jupyter lab"))
        token = lab.token()
        self.assertTrue(token, "".join(lab.output)[-2000:])
        relay = await self.relay_to(lab.port)
        auth = [("Authorization", f"token {token}")]
        user = await http_user(self, relay.http_port)
        reply = await user.request(HOST, f"/lab?token={token}")
        self.assertEqual(reply.status, 200, reply.body[:500])
        self.assertIn(b"JupyterLab", reply.body)
        cookie = login_cookie(reply)
        reply = await user.request(
            HOST,
            "/api/kernels",
            method="POST",
            headers=auth + [("Content-Type", "application/json")],
            body=json.dumps({"name": "python3"}).encode(),
        )
        self.assertEqual(reply.status, 201, reply.body)
        content = await within(
            deferToThread(
                execute_over_websocket,
                relay.http_port,
                reply.json()["id"],
                "",
                "6*7",
                cookie,
            ),
            KERNEL_RESULT + 10,
        )
        self.assertEqual(content["data"]["text/plain"], "42")

    @async_test
    async def test_without_allow_remote_access_is_403(self):
        """Without the README's --ServerApp.allow_remote_access=True,
        Jupyter on 127.0.0.1 refuses the relayed name: the README's flag
        is what makes it work."""
        argv = [
            arg
            for arg in readme_command("jupyter lab")
            if not arg.startswith("--ServerApp.allow_remote_access")
        ]
        lab = await self.start_lab(argv)
        relay = await self.relay_to(lab.port)
        user = await http_user(self, relay.http_port)
        reply = await user.request(HOST, f"/lab?token={lab.token()}")
        self.assertEqual(reply.status, 403, reply.body[:500])

    @async_test
    async def test_host_rewrite_passes_pages_but_not_kernels(self):
        """The README's trade-off: host_header_rewrite instead of the flag
        serves the page, and Jupyter refuses a browser's kernel websocket
        (logged in by cookie, its Origin naming the relayed host)."""
        argv = [
            arg
            for arg in readme_command("jupyter lab")
            if not arg.startswith("--ServerApp.allow_remote_access")
        ]
        lab = await self.start_lab(argv)
        token = lab.token()
        relay = await self.relay_to(lab.port, host_header_rewrite="127.0.0.1")
        user = await http_user(self, relay.http_port)
        reply = await user.request(HOST, f"/lab?token={token}")
        self.assertEqual(reply.status, 200, reply.body[:500])
        cookie = login_cookie(reply)
        reply = await user.request(
            HOST,
            "/api/kernels",
            method="POST",
            headers=[
                ("Authorization", f"token {token}"),
                ("Content-Type", "application/json"),
            ],
            body=json.dumps({"name": "python3"}).encode(),
        )
        self.assertEqual(reply.status, 201, reply.body)
        import websocket

        failure = await self.assertFailure(
            within(
                deferToThread(
                    execute_over_websocket,
                    relay.http_port,
                    reply.json()["id"],
                    "",
                    "1",
                    cookie,
                ),
                KERNEL_RESULT + 10,
            ),
            websocket.WebSocketBadStatusException,
        )
        self.assertEqual(failure.status_code, 403)
