# -*- test-case-name: tests.integration.test_reload -*-
"""
Live reload of the client (labrelay.client.reload) against a real relay on
127.0.0.1: unchanged proxies keep their live connections, SIGHUP reloads,
and a reload starts, moves and stops the admin API.
"""

import os
import signal

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from ..support.config_files import client_text, proxies, rewrite, write
from ..support.harness import (
    LogCapture,
    Relay,
    async_test,
    connect_user,
    echo_server,
    file_client,
    recording_echo_server,
    running_port,
    within,
)


class LiveReloadTests(TestCase):
    """Reload against a real relay on 127.0.0.1."""

    timeout = 30

    @async_test
    async def test_unchanged_proxy_keeps_its_connection(self):
        """A user connection through an unchanged proxy keeps echoing across
        a reload that adds one proxy, removes another and changes a third;
        the removed port is closed and the changed proxy reaches its new
        backend."""
        relay = await Relay(self).start()
        backend = echo_server(self)
        other, accepted = recording_echo_server(self)
        before = proxies(("keep", backend), ("gone", backend), ("change", backend))
        path = write(self, client_text(relay.port, before))
        client = file_client(self, path)
        keep = await running_port(client, "keep")
        gone = await running_port(client, "gone")
        await running_port(client, "change")
        user = await connect_user(self, keep)
        user.transport.write(b"before")
        await within(user.wait_for(6))

        rewrite(
            path,
            client_text(
                relay.port,
                proxies(("keep", backend), ("change", other), ("new", backend)),
            ),
        )
        result = client.reload()
        self.assertEqual(
            (result.diff.added, result.diff.removed, result.diff.changed),
            (("new",), ("gone",), ("change",)),
        )
        new = await running_port(client, "new")
        changed = await running_port(client, "change")

        user.transport.write(b"after")
        self.assertEqual(await within(user.wait_for(11)), b"beforeafter")
        through_new = await connect_user(self, new)
        through_new.transport.write(b"new")
        self.assertEqual(await within(through_new.wait_for(3)), b"new")
        through_changed = await connect_user(self, changed)
        through_changed.transport.write(b"moved")
        connection = await within(accepted.get())
        self.assertEqual(await within(connection.wait_for(5)), b"moved")
        self.assertNotIn("gone", client.proxies)
        self.assertNotIn("gone", relay.server.registry.proxies)
        if gone not in (keep, new, changed):
            with self.assertRaises(Exception):
                await connect_user(self, gone)

    @async_test
    async def test_sighup_reloads(self):
        """SIGHUP reloads the file (a new proxy starts), and stopping the
        client puts the previous SIGHUP handler back."""
        relay = await Relay(self).start()
        backend = echo_server(self)
        previous = signal.getsignal(signal.SIGHUP)
        path = write(self, client_text(relay.port, proxies(("a", backend))))
        client = file_client(self, path)
        await running_port(client, "a")
        self.assertEqual(signal.getsignal(signal.SIGHUP), client.sighup.on_signal)
        rewrite(path, client_text(relay.port, proxies(("a", backend), ("b", backend))))
        log = LogCapture(self)
        os.kill(os.getpid(), signal.SIGHUP)
        await within(log.when_logged("reload: [b] added"))
        port = await running_port(client, "b")
        user = await connect_user(self, port)
        user.transport.write(b"hup")
        self.assertEqual(await within(user.wait_for(3)), b"hup")
        await client.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)


async def admin_status(port, user="", password=""):
    """GET /api/status on 127.0.0.1:*port*: (code, body)."""
    import base64

    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers

    headers = Headers({"Host": [f"127.0.0.1:{port}"]})
    if user or password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers.addRawHeader("Authorization", f"Basic {token}")
    agent = Agent(reactor)
    response = await within(
        agent.request(b"GET", f"http://127.0.0.1:{port}/api/status".encode(), headers)
    )
    body = await within(readBody(response))
    return response.code, body


def refused(port) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


class AdminReloadTests(TestCase):
    """A reload starts, moves and stops the admin API and takes its new
    credentials, so admin commands need no restart."""

    timeout = 30

    @async_test
    async def test_start_move_stop(self):
        from ..support.processes import free_port

        relay = await Relay(self).start()
        path = write(self, client_text(relay.port))
        client = file_client(self, path)
        self.assertIsNone(client.admin)

        first = free_port()
        rewrite(
            path,
            client_text(
                relay.port, extra=(f"admin_addr = 127.0.0.1\nadmin_port = {first}\n")
            ),
        )
        self.assertEqual(client.reload().restart_keys, ())
        await within(client.when_admin_settled())
        self.assertEqual((await admin_status(first))[0], 200)

        second = free_port()
        rewrite(
            path,
            client_text(
                relay.port,
                extra=(
                    f"admin_addr = 127.0.0.1\nadmin_port = {second}\n"
                    f"admin_user = admin\nadmin_pwd = s3cret\n"
                ),
            ),
        )
        client.reload()
        await within(client.when_admin_settled())
        port = await within(client.when_admin_listening())
        self.assertEqual(port.getHost().port, second)
        self.assertTrue(refused(first))
        self.assertEqual((await admin_status(second))[0], 401)
        self.assertEqual((await admin_status(second, "admin", "s3cret"))[0], 200)

        rewrite(path, client_text(relay.port))
        client.reload()
        await within(client.when_admin_settled())
        self.assertIsNone(client.admin)
        self.assertTrue(refused(second))

    @async_test
    async def test_move_to_a_taken_port_keeps_the_old_one(self):
        import socket

        from ..support.processes import free_port

        relay = await Relay(self).start()
        first = free_port()
        text = client_text(
            relay.port, extra=(f"admin_addr = 127.0.0.1\nadmin_port = {first}\n")
        )
        path = write(self, text)
        client = file_client(self, path)
        await within(client.when_admin_listening())
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        log = LogCapture(self)
        rewrite(
            path,
            client_text(
                relay.port,
                extra=(
                    f"admin_addr = 127.0.0.1\nadmin_port = {taken.getsockname()[1]}\n"
                ),
            ),
        )
        client.reload()
        await within(client.when_admin_settled())
        self.assertEqual(len(log.lines("cannot listen")), 1)
        self.assertEqual((await admin_status(first))[0], 200)
        self.assertEqual(client.config.admin_port, first)
