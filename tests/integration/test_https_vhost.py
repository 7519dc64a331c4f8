"""
The HTTPS vhost on real loopback sockets: curl reaches TLS backends (each
with its own certificate) through the relay by server name (custom
domain, subdomain, wildcard), and the vhost refuses what it cannot route:
an unknown name or none (a TLS unrecognized_name alert), garbage, a hello
too slow or too large, too many connections from one source; the port
keeps serving after each.
"""

import shutil
import socket
import ssl

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from labrelay.server.https_proxy import UNRECOGNIZED_NAME_ALERT
from tests.support.harness import Client, async_test, within
from tests.support.named_ports import (
    NamedRelay,
    ca_file,
    client_hello,
    named_proxy,
    raw_user,
    tls_backend,
)

CURL = shutil.which("curl")


def python_get(host, port, ca):
    """What curl does, with Python's ssl in a thread (where curl is not
    installed): (0, body, b"") or (1, b"", the error)."""
    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(
                    f"GET / HTTP/1.1\r\nHost: {host}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
    except (OSError, ssl.SSLError) as e:
        return 1, b"", str(e).encode()
    return 0, data.split(b"\r\n\r\n", 1)[1], b""


async def curl(testcase, host, port, ca):
    """``curl https://host:port/`` resolved to 127.0.0.1: (exit code,
    output, errors)."""
    if CURL is None:
        return await within(deferToThread(python_get, host, port, ca), seconds=20)
    out, err, code = await within(
        getProcessOutputAndValue(
            CURL,
            [
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                ca,
                "--resolve",
                f"{host}:{port}:127.0.0.1",
                f"https://{host}:{port}/",
            ],
            env={},
            reactor=reactor,
        ),
        seconds=20,
    )
    return code, out, err


class HttpsThroughTheRelay(TestCase):
    async def relay_with_proxies(self, extra=""):
        relay = await NamedRelay(self, extra).start()
        tensorboard = tls_backend(
            self, ["tb.gpu1.example.test"], body=b"tensorboard on gpu1\n"
        )
        demo = tls_backend(self, ["demo.lab.example.test"], body=b"model demo\n")
        runs = tls_backend(self, ["*.runs.example.test"], body=b"a run\n")
        proxies = (
            named_proxy(
                "tensorboard",
                "https",
                tensorboard,
                custom_domains="tb.gpu1.example.test",
            )
            + named_proxy("demo", "https", demo, subdomain="demo")
            + named_proxy("runs", "https", runs, custom_domains="*.runs.example.test")
        )
        client = await Client(self, relay.port, proxies).start()
        for name in ("tensorboard", "demo", "runs"):
            state = await within(client.client.when_proxy_status(name, "running"))
            self.assertIn(f":{relay.https_port}", state.remote_addr)
        return relay

    @async_test
    async def test_curl_reaches_each_backend_by_name(self):
        relay = await self.relay_with_proxies()
        ca = ca_file(self)
        for host, body in [
            ("tb.gpu1.example.test", b"tensorboard on gpu1\n"),
            ("demo.lab.example.test", b"model demo\n"),
            ("exp42.runs.example.test", b"a run\n"),
        ]:
            code, out, err = await curl(self, host, relay.https_port, ca)
            self.assertEqual((code, out), (0, body), err)

    @async_test
    async def test_unknown_name_gets_an_alert_and_the_port_keeps_serving(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.https_port)
        user.transport.write(client_hello("nobody.example.test"))
        self.assertEqual(await within(user.closed), UNRECOGNIZED_NAME_ALERT)
        code, out, err = await curl(
            self, "nobody.example.test", relay.https_port, ca_file(self)
        )
        self.assertNotEqual(code, 0)
        code, out, _ = await curl(
            self, "tb.gpu1.example.test", relay.https_port, ca_file(self)
        )
        self.assertEqual((code, out), (0, b"tensorboard on gpu1\n"))

    @async_test
    async def test_hello_without_a_name_is_refused(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.https_port)
        user.transport.write(client_hello(None))
        self.assertEqual(await within(user.closed), UNRECOGNIZED_NAME_ALERT)

    @async_test
    async def test_garbage_is_closed_at_once(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.https_port)
        user.transport.write(b"GET / HTTP/1.1\r\nHost: demo.lab.example.test\r\n\r\n")
        self.assertEqual(await within(user.closed, seconds=2), b"")

    @async_test
    async def test_oversized_hello_is_refused(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.https_port)
        user.transport.write(b"\x16\x03\x01\x40\x00\x01\xff\xff\xff")
        self.assertEqual(await within(user.closed, seconds=2), b"")

    @async_test
    async def test_slow_hello_is_closed_at_its_deadline(self):
        relay = await self.relay_with_proxies()
        relay.https.timeout = 0.3
        slow = await raw_user(self, relay.https_port)
        slow.transport.write(client_hello("demo.lab.example.test")[:20])
        started = reactor.seconds()
        await within(slow.closed, seconds=5)
        self.assertGreater(reactor.seconds() - started, 0.2)
        code, out, _ = await curl(
            self, "demo.lab.example.test", relay.https_port, ca_file(self)
        )
        self.assertEqual((code, out), (0, b"model demo\n"))
        self.assertEqual(dict(relay.https.pending), {})

    @async_test
    async def test_connections_per_source_are_bounded(self):
        relay = await self.relay_with_proxies("max_unauthenticated_per_source = 2\n")
        first = await raw_user(self, relay.https_port)
        second = await raw_user(self, relay.https_port)
        first.transport.write(b"\x16")
        second.transport.write(b"\x16")
        third = await raw_user(self, relay.https_port)
        await within(third.closed, seconds=2)
        self.assertFalse(first.closed.called or second.closed.called)
        first.transport.abortConnection()
        await within(first.closed)
        code, out, _ = await curl(
            self, "demo.lab.example.test", relay.https_port, ca_file(self)
        )
        self.assertEqual((code, out), (0, b"model demo\n"))

    @async_test
    async def test_python_ssl_client_checks_the_backend_certificate(self):
        relay = await self.relay_with_proxies()
        ca = ca_file(self)
        code, out, err = await within(
            deferToThread(python_get, "tb.gpu1.example.test", relay.https_port, ca),
            seconds=20,
        )
        self.assertEqual((code, out), (0, b"tensorboard on gpu1\n"), err)
