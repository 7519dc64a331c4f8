# -*- test-case-name: tests.integration.test_vhost_paths -*-
"""
Request paths through the HTTP vhost, table-driven, on real sockets: a
``/admin`` location behind ``http_user``/``http_pwd`` and a root route on
one domain, each with its own backend.  Every spelling that means
``/admin`` must reach the admin route (its basic auth, then its backend,
which receives the normal path), or be refused 400; the query is kept as
sent.
"""

from twisted.trial.unittest import TestCase

from ..support.backends import web_backend
from ..support.harness import LogCapture, async_test, connect_user, within
from ..support.vhost import VhostRelay, basic, http_proxy, http_user, start_client

HOST = "paths.example.org"
CREDENTIALS = basic("admin", "s3cret")

#: target -> (route, target the backend receives), or 400
CASES = {
    "/admin": ("admin", "/admin"),
    "/admin/x?q=1": ("admin", "/admin/x?q=1"),
    "/x/../admin": ("admin", "/admin"),
    "//admin": ("admin", "/admin"),
    "/./admin": ("admin", "/admin"),
    "/%2e%2e/admin": ("admin", "/admin"),
    "/%2E/admin/": ("admin", "/admin/"),
    "/.%2e/admin": ("admin", "/admin"),
    "/admin/../admin": ("admin", "/admin"),
    "/%61dmin": ("admin", "/admin"),
    "/x/..//admin//y?a=/../b&c=%2e": ("admin", "/admin/y?a=/../b&c=%2e"),
    f"http://{HOST}//admin": ("admin", "/admin"),
    f"http://{HOST}/x/../admin?x=1": ("admin", "/admin?x=1"),
    f"http://{HOST}": ("root", "/"),
    f"http://{HOST}/a/./b?": ("root", "/a/b?"),
    "/admin/..": ("root", "/"),
    "/public/../index.html?next=/../admin": ("root", "/index.html?next=/../admin"),
    "/api/queues/%2f/q": ("root", "/api/queues/%2F/q"),
    "/my%20file~": ("root", "/my%20file~"),
    "/x/..%2Fadmin": 400,
    "/%2Fadmin": 400,
    "/%2e%2e%2fadmin": 400,
    "/x/..;/admin": 400,
    "/x\\..\\admin": 400,
    "/x/%2e%2e%5cadmin": 400,
    "admin": 400,
    "/a%zz": 400,
    "/a%2": 400,
    "/x#/../admin": 400,
    f"http://{HOST}/x#/../admin": 400,
}


class PathTests(TestCase):
    timeout = 60

    async def setup(self):
        relay = await VhostRelay(self).start()
        proxies = http_proxy(
            "root", web_backend(self, "root"), custom_domains=HOST
        ) + http_proxy(
            "admin",
            web_backend(self, "admin"),
            custom_domains=HOST,
            locations="/admin",
            http_user="admin",
            http_pwd="s3cret",
        )
        await start_client(self, relay, proxies, ["root", "admin"])
        return relay

    async def ask(self, relay, target, headers=()):
        user = await http_user(self, relay.http_port)
        return await user.request(HOST, target, headers=list(headers))

    @async_test
    async def test_paths(self):
        """Each target of the table: its route, its auth, the path the
        backend receives; or 400."""
        relay = await self.setup()
        for target, expected in CASES.items():
            plain = await self.ask(relay, target)
            if expected == 400:
                self.assertEqual((target, plain.status), (target, 400))
                continue
            route, forwarded = expected
            if route == "admin":
                # absolute-form is a proxy request: 407, Proxy-Authorization
                proxied = target.startswith("http://")
                self.assertEqual(
                    (target, plain.status), (target, 407 if proxied else 401)
                )
                name, value = CREDENTIALS
                if proxied:
                    name = "Proxy-Authorization"
                reply = await self.ask(relay, target, [(name, value)])
            else:
                reply = plain
            self.assertEqual((target, reply.status), (target, 200))
            info = reply.json()
            self.assertEqual(
                (target, info["backend"], info["uri"]), (target, route, forwarded)
            )

    @async_test
    async def test_no_route_log_escaped(self):
        """The "no route" line writes control characters of the Host and
        of the decoded path escaped, never raw."""
        relay = await self.setup()
        logs = LogCapture(self)
        user = await connect_user(self, relay.http_port)
        user.transport.write(
            b"GET /%1b[2J%0d%0aforged%07 HTTP/1.1\r\n"
            b"Host: evil\x1b]0;x\x07.example.net\r\n"
            b"Connection: close\r\n\r\n"
        )
        received = await within(user.closed)
        self.assertTrue(received.startswith(b"HTTP/1.1 404 "))
        [line] = logs.lines("no route for")
        for raw in "\x1b\r\n\x07":
            self.assertNotIn(raw, line)
        self.assertIn("\\x1B[2J\\x0D\\x0Aforged\\x07", line)
        self.assertIn("evil\\x1B]0;x\\x07.example.net", line)
