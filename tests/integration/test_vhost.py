# -*- test-case-name: tests.integration.test_vhost -*-
"""
The HTTP vhost end to end: a real server with vhost_http_port, real
clients with ``type = http`` proxies, HTTP backends and users on 127.0.0.1,
with tcp_mux on and off.
"""

import base64
import hashlib
import json
import os

import h11
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from labrelay.config import parse_server_config
from labrelay.server.service import RelayServer
from labrelay.server.vhost import NOT_FOUND_PAGE
from labrelay.tls import server_tls_options

from ..support.backends import (
    Chunks,
    MiB,
    PatternWriter,
    SinkBackend,
    SourceBackend,
    Stall,
    StreamUser,
    chunked_backend,
    closed_port,
    pattern_sha,
    web_backend,
)
from ..support.harness import Client, Relay, async_test, connect_user, listen, within
from ..support.vhost import (
    SUBDOMAIN_HOST,
    VhostRelay,
    basic,
    get,
    http_proxy,
    http_user,
    raw_user,
    start_client,
)
from ..support.websocket import WsEcho, WsUser, ws_accept, ws_frame


class VhostMixin:
    mux = True
    tls = False
    timeout = 120

    async def relay(self, extra="", **kw):
        return await VhostRelay(self, extra, mux=self.mux, **kw).start()

    async def client(self, relay, proxies, names, extra=""):
        return await start_client(
            self, relay, proxies, names, extra, mux=self.mux, tls=self.tls
        )

    async def one_proxy(self, **options):
        relay = await self.relay()
        backend = web_backend(self, "alpha")
        client = await self.client(
            relay, http_proxy("web", backend, **options), ["web"]
        )
        return relay, client

    @async_test
    async def test_subdomain_get(self):
        """A subdomain routes to its backend with the forwarding headers set."""
        relay, client = await self.one_proxy(subdomain="jupyter")
        state = client.client.proxies["web"]
        self.assertEqual(
            state.remote_addr, f"jupyter.{SUBDOMAIN_HOST}:{relay.http_port}"
        )
        reply = await get(
            self,
            relay,
            f"jupyter.{SUBDOMAIN_HOST}",
            "/lab?x=1",
            headers=[("Connection", "close")],
        )
        self.assertEqual(reply.status, 200)
        info = reply.json()
        self.assertEqual(
            (info["backend"], info["method"], info["uri"]), ("alpha", "GET", "/lab?x=1")
        )
        headers = info["headers"]
        self.assertEqual(headers["host"], [f"jupyter.{SUBDOMAIN_HOST}"])
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"], [f"jupyter.{SUBDOMAIN_HOST}"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])
        self.assertNotIn("connection", headers)

    @async_test
    async def test_trailing_dot_host(self):
        """A Host with a trailing dot and a port reaches a subdomain whose
        subdomain_host is written with a trailing dot."""
        relay = await self.relay(subdomain_host=SUBDOMAIN_HOST + ".")
        backend = web_backend(self, "dot")
        await self.client(
            relay, http_proxy("web", backend, subdomain="jupyter"), ["web"]
        )
        reply = await get(self, relay, f"jupyter.{SUBDOMAIN_HOST}.:{relay.http_port}")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["backend"], "dot")

    @async_test
    async def test_two_trailing_dots_are_400(self):
        """One trailing dot is a host name's absolute form; two make no
        host name, even with a catch-all route: 400, never a route."""
        relay = await self.relay()
        backend = web_backend(self, "any")
        await self.client(
            relay,
            http_proxy("web", backend, subdomain="j", custom_domains="*"),
            ["web"],
        )
        reply = await get(self, relay, f"j.{SUBDOMAIN_HOST}.")
        self.assertEqual(reply.status, 200)
        for host in (f"j.{SUBDOMAIN_HOST}..", f"j.{SUBDOMAIN_HOST}..:80", ".."):
            reply = await get(self, relay, host)
            self.assertEqual(reply.status, 400, host)
            self.assertIn(b"trailing dot", reply.body)

    @async_test
    async def test_custom_domains_wildcard_and_star(self):
        """Exact, wildcard and catch-all domains route as frp's router."""
        relay = await self.relay()
        ports = {name: web_backend(self, name) for name in ("exact", "wild", "star")}
        proxies = (
            http_proxy("exact", ports["exact"], custom_domains="app.example.org")
            + http_proxy("wild", ports["wild"], custom_domains="*.example.org")
            + http_proxy("star", ports["star"], custom_domains="*")
        )
        await self.client(relay, proxies, ["exact", "wild", "star"])
        user = await http_user(self, relay.http_port)
        for host, backend in (
            ("APP.example.org", "exact"),
            ("other.example.org:81", "wild"),
            ("a.b.example.org", "wild"),
            ("example.com", "star"),
            ("app.example.org", "exact"),
        ):
            reply = await user.request(host)
            self.assertEqual((host, reply.json()["backend"]), (host, backend))

    @async_test
    async def test_locations_longest_prefix(self):
        """The longest matching location prefix picks the proxy."""
        relay = await self.relay()
        root, api = web_backend(self, "root"), web_backend(self, "api")
        proxies = http_proxy("root", root, custom_domains="h.example.org") + http_proxy(
            "api", api, custom_domains="h.example.org", locations="/api,/rpc"
        )
        await self.client(relay, proxies, ["root", "api"])
        user = await http_user(self, relay.http_port)
        for path, backend in (
            ("/api/v1", "api"),
            ("/apix", "api"),
            ("/rpc", "api"),
            ("/", "root"),
            ("/other/api", "root"),
        ):
            reply = await user.request("h.example.org", path)
            self.assertEqual((path, reply.json()["backend"]), (path, backend))

    @async_test
    async def test_route_by_http_user(self):
        """route_by_http_user sends that user's requests to its own proxy."""
        relay = await self.relay()
        alice, others = web_backend(self, "alice"), web_backend(self, "any")
        proxies = http_proxy(
            "alice", alice, custom_domains="u.example.org", route_by_http_user="alice"
        ) + http_proxy("any", others, custom_domains="u.example.org")
        await self.client(relay, proxies, ["alice", "any"])
        user = await http_user(self, relay.http_port)
        reply = await user.request("u.example.org", headers=[basic("alice", "pw")])
        self.assertEqual(reply.json()["backend"], "alice")
        reply = await user.request("u.example.org", headers=[basic("bob", "pw")])
        self.assertEqual(reply.json()["backend"], "any")
        reply = await user.request("u.example.org")
        self.assertEqual(reply.json()["backend"], "any")

    @async_test
    async def test_basic_auth(self):
        """http_user/http_pwd answer 401 without the right credentials."""
        relay, _ = await self.one_proxy(
            custom_domains="auth.example.org", http_user="ann", http_pwd="s3cret"
        )
        user = await http_user(self, relay.http_port)
        for headers in (
            [],
            [basic("ann", "wrong")],
            [basic("bob", "s3cret")],
            [("Authorization", "Basic !!!")],
        ):
            reply = await user.request("auth.example.org", headers=headers)
            self.assertEqual(reply.status, 401)
            self.assertEqual(
                reply.headers["www-authenticate"], 'Basic realm="Restricted"'
            )
            self.assertEqual(reply.body, b"Unauthorized\n")
        reply = await user.request("auth.example.org", headers=[basic("ann", "s3cret")])
        self.assertEqual(reply.status, 200)
        self.assertEqual(
            reply.json()["headers"]["authorization"], [basic("ann", "s3cret")[1]]
        )

    @async_test
    async def test_host_rewrite_and_headers(self):
        """host_header_rewrite replaces Host; header_* sets request headers;
        X-Forwarded-For is appended to."""
        relay, _ = await self.one_proxy(
            custom_domains="rw.example.org",
            host_header_rewrite="inner.local",
            header_X_From_Where="frp",
            header_X_Replaced="relay",
        )
        reply = await get(
            self,
            relay,
            "rw.example.org:8080",
            headers=[
                ("X-Replaced", "user"),
                ("X-Forwarded-For", "2.2.2.2"),
                ("X-Forwarded-Host", "spoofed"),
            ],
        )
        headers = reply.json()["headers"]
        self.assertEqual(headers["host"], ["inner.local"])
        self.assertEqual(headers["x-from-where"], ["frp"])
        self.assertEqual(headers["x-replaced"], ["relay"])
        self.assertEqual(headers["x-forwarded-for"], ["2.2.2.2, 127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"], ["rw.example.org:8080"])

    @async_test
    async def test_two_clients_two_subdomains_one_connection(self):
        """One keep-alive user connection switches Host between requests and
        reaches two backends behind two clients."""
        relay = await self.relay()
        for name in ("alpha", "beta"):
            backend = web_backend(self, name)
            await self.client(
                relay,
                http_proxy(name, backend, subdomain=name),
                [f"{name}.{name}"],
                extra=f"user = {name}\n",
            )
        user = await http_user(self, relay.http_port)
        for name in ("alpha", "beta", "alpha", "beta"):
            reply = await user.request(f"{name}.{SUBDOMAIN_HOST}", f"/{name}")
            info = reply.json()
            self.assertEqual((info["backend"], info["uri"]), (name, f"/{name}"))
        self.assertTrue(user.transport.connected)

    @async_test
    async def test_not_found(self):
        """An unknown host gets the built-in Not Found page, keep-alive."""
        relay, _ = await self.one_proxy(subdomain="known")
        user = await http_user(self, relay.http_port)
        reply = await user.request("unknown.example.org")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.headers["content-type"], "text/html; charset=utf-8")
        self.assertIn(b"<title>Not Found</title>", reply.body)
        self.assertEqual(reply.body, NOT_FOUND_PAGE)
        reply = await user.request(f"known.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)

    @async_test
    async def test_custom_not_found_page(self):
        """custom_404_page is served for unknown hosts."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"<html><title>Not Found</title>our own page</html>\n")
        relay = await self.relay(f"custom_404_page = {path}\n")
        reply = await get(self, relay, "nobody.example.org", method="HEAD")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.body, b"")
        reply = await get(self, relay, "nobody.example.org")
        self.assertEqual(
            reply.body, b"<html><title>Not Found</title>our own page</html>\n"
        )
        self.assertEqual(reply.headers["content-type"], "text/html; charset=utf-8")

    @async_test
    async def test_local_service_down(self):
        """A client whose local service refuses answers 502, and the user
        connection goes on serving."""
        relay = await self.relay()
        dead = await within(closed_port(self))
        alive = web_backend(self, "alive")
        await self.client(
            relay,
            http_proxy("dead", dead, subdomain="dead")
            + http_proxy("alive", alive, subdomain="alive"),
            ["dead", "alive"],
        )
        user = await http_user(self, relay.http_port)
        reply = await user.request(f"dead.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 502)
        reply = await user.request(f"alive.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.json()["backend"], "alive")

    @async_test
    async def test_no_work_connection(self):
        """No work connection within user_conn_timeout answers 504."""
        relay = await self.relay("user_conn_timeout = 1\n")
        backend = web_backend(self, "idle")
        client = await self.client(
            relay,
            http_proxy("web", backend, subdomain="idle"),
            ["web"],
            extra="pool_count = 0\n",
        )
        # the client stops answering ReqWorkConn
        client.client.open_work_connection = lambda: None
        reply = await get(self, relay, f"idle.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 504)

    @async_test
    async def test_encryption_and_compression(self):
        """An http proxy with use_encryption and use_compression relays a
        request body and a response byte-exact."""
        relay, _ = await self.one_proxy(
            subdomain="enc", use_encryption="true", use_compression="true"
        )
        body = b"compressible " * 20000 + os.urandom(50000)
        reply = await get(
            self, relay, f"enc.{SUBDOMAIN_HOST}", "/post", method="POST", body=body
        )
        info = reply.json()
        self.assertEqual(
            (info["body_len"], info["body_sha"]),
            (len(body), hashlib.sha256(body).hexdigest()),
        )

    @async_test
    async def test_chunked_both_ways(self):
        """A chunked request body arrives whole; a chunked response streams
        through whole."""
        relay = await self.relay()
        inspect, chunks = web_backend(self, "in"), chunked_backend(self)
        await self.client(
            relay,
            http_proxy("in", inspect, subdomain="in")
            + http_proxy("out", chunks, subdomain="out"),
            ["in", "out"],
        )
        user = await http_user(self, relay.http_port)
        body = os.urandom(200000)
        user._waiting = d = defer.Deferred()
        http = user.http
        user.transport.write(
            http.send(
                h11.Request(
                    method="POST",
                    target="/up",
                    headers=[
                        ("Host", f"in.{SUBDOMAIN_HOST}"),
                        ("Transfer-Encoding", "chunked"),
                    ],
                )
            )
        )
        for i in range(0, len(body), 30000):
            user.transport.write(http.send(h11.Data(data=body[i : i + 30000])))
        user.transport.write(http.send(h11.EndOfMessage()))
        info = (await within(d)).json()
        self.assertEqual(
            (info["body_len"], info["body_sha"]),
            (len(body), hashlib.sha256(body).hexdigest()),
        )
        reply = await user.request(f"out.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.headers.get("transfer-encoding"), "chunked")
        self.assertEqual(reply.body, b"".join(Chunks.parts))

    @async_test
    async def test_conflict(self):
        """A second proxy on the same domain is refused with frp's error."""
        relay = await self.relay()
        backend = web_backend(self, "first")
        await self.client(
            relay,
            http_proxy("first", backend, subdomain="same"),
            ["a.first"],
            extra="user = a\n",
        )
        second = await Client(
            self,
            relay.port,
            http_proxy("second", backend, subdomain="same"),
            "user = b\n",
            mux=self.mux,
            tls=self.tls,
        ).start()
        state = await within(second.client.when_proxy_status("b.second", "start error"))
        self.assertEqual(state.error, "router config conflict")

    @async_test
    async def test_closed_proxy_frees_routes(self):
        """When the client goes, its hosts answer 404 and can be taken again."""
        relay = await self.relay()
        backend = web_backend(self, "gone")
        client = await self.client(
            relay, http_proxy("web", backend, subdomain="gone"), ["web"]
        )
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)
        await within(client.client.stopService())
        for _ in range(200):
            if not relay.server.registry.controls:
                break
            await within(deferLater0(), 1)
        self.assertEqual(len(relay.vhost.routes), 0)
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 404)
        await self.client(relay, http_proxy("web", backend, subdomain="gone"), ["web"])
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)

    @async_test
    async def test_head_too_large(self):
        """A request head over 64 KiB is answered 431 and closed."""
        relay, _ = await self.one_proxy(subdomain="big")
        user = await connect_user(self, relay.http_port)
        user.transport.write(
            b"GET / HTTP/1.1\r\nHost: big."
            + SUBDOMAIN_HOST.encode()
            + b"\r\nX-Big: "
            + b"a" * (70 * 1024)
            + b"\r\n\r\n"
        )
        received = await within(user.closed)
        self.assertTrue(
            received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            received,
        )
        self.assertIn(b"\r\nConnection: close\r\n", received)

    @async_test
    async def test_missing_host(self):
        """A request without Host (HTTP/1.1 or 1.0) is answered 400 and closed."""
        relay, _ = await self.one_proxy(subdomain="any")
        for request in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
            user = await connect_user(self, relay.http_port)
            user.transport.write(request)
            received = await within(user.closed)
            self.assertTrue(received.startswith(b"HTTP/1.1 400 "), received)
            self.assertIn(b"\r\nConnection: close\r\n", received)

    @async_test
    async def test_garbage_does_not_disturb_others(self):
        """Garbage on the vhost port gets 400; other users are still served."""
        relay, _ = await self.one_proxy(subdomain="fine")
        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" + os.urandom(300),
            b"GET / HTTP/1.1\r\nHost: fine\r\nno colon here\r\n\r\n",
            b"BREW /pot HTCPCP/1.0\r\n\r\n",
        ):
            user = await connect_user(self, relay.http_port)
            user.transport.write(garbage)
            reply = await get(self, relay, f"fine.{SUBDOMAIN_HOST}")
            self.assertEqual(reply.status, 200)
            received = await within(user.closed)
            self.assertTrue(received.startswith(b"HTTP/1.1 400 "), received)

    @async_test
    async def test_slowloris(self):
        """A head sent too slowly is answered 408 and closed; an idle
        keep-alive connection is closed quietly."""
        relay, _ = await self.one_proxy(subdomain="slow")
        relay.vhost.head_timeout = 0.3
        user = await connect_user(self, relay.http_port)
        user.transport.write(b"GET / HTTP/1.1\r\nHost: slow.")
        received = await within(user.closed, 5)
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
        idle = await http_user(self, relay.http_port)
        reply = await idle.request(f"slow.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)
        raw = bytes(idle.raw)
        self.assertEqual(await within(idle.closed, 5), raw)

    @async_test
    async def test_response_timeout_and_event_stream(self):
        """No response head within vhost_http_timeout answers 504; a response
        that has started may stay quiet longer (server-sent events)."""
        relay = await self.relay("vhost_http_timeout = 1\n")
        resource = Stall()
        self.addCleanup(resource.cancel)
        backend = listen(self, Site(resource))
        await self.client(
            relay, http_proxy("slow", backend, subdomain="slow"), ["slow"]
        )
        reply = await get(self, relay, f"slow.{SUBDOMAIN_HOST}", "/stall")
        self.assertEqual(reply.status, 504)
        reply = await get(self, relay, f"slow.{SUBDOMAIN_HOST}", "/sse")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, b"data: one\n\ndata: two\n\n")

    @async_test
    async def test_websocket_echo(self):
        """A WebSocket upgrade gets the backend's 101, then frames flow raw
        both ways."""
        await self.websocket_echo()

    @async_test
    async def test_websocket_echo_encrypted(self):
        """The upgraded connection keeps the work connection's encryption
        and compression streams going."""
        await self.websocket_echo(use_encryption="true", use_compression="true")

    async def websocket_echo(self, **options):
        relay = await self.relay()
        backend = listen(self, Factory.forProtocol(WsEcho))
        await self.client(
            relay, http_proxy("ws", backend, subdomain="ws", **options), ["ws"]
        )
        user = await raw_user(self, relay.http_port, WsUser())
        key = base64.b64encode(os.urandom(16))
        user.transport.write(
            b"GET /socket HTTP/1.1\r\nHost: ws."
            + SUBDOMAIN_HOST.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13"
            b"\r\n\r\n" + ws_frame(1, b"hello", b"abcd")
        )
        head = await user.head()
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 101 Switching Protocols")
        self.assertIn(b"Sec-WebSocket-Accept: " + ws_accept(key), lines)
        self.assertIn(b"Upgrade: websocket", lines)
        self.assertEqual(await user.frame(), (1, b"hello"))
        big = os.urandom(300000)
        user.transport.write(ws_frame(2, big, b"wxyz"))
        self.assertEqual(await user.frame(), (2, big))
        user.transport.write(ws_frame(8, b"", b"0000"))
        self.assertEqual(await user.frame(), (8, b""))
        await within(user.closed)

    @async_test
    async def test_upload_64mib_streamed(self):
        """64 MiB up to a slow backend arrive byte-exact while the relay
        holds only a bounded amount of them."""
        relay = await self.relay()
        total = 64 * MiB
        peak = [0]

        def sample():
            peak[0] = max(peak[0], relay.vhost.buffered_bytes())

        sinks = []

        def sink():
            sinks.append(SinkBackend(sample))
            return sinks[-1]

        backend = listen(self, Factory.forProtocol(sink))
        await self.client(relay, http_proxy("up", backend, subdomain="up"), ["up"])
        user = await http_user(self, relay.http_port)
        user._waiting = d = defer.Deferred()
        user.transport.write(
            user.http.send(
                h11.Request(
                    method="PUT",
                    target="/big",
                    headers=[
                        ("Host", f"up.{SUBDOMAIN_HOST}"),
                        ("Content-Length", str(total)),
                    ],
                )
            )
        )
        user.http.send(h11.Data(data=b"\0" * total))  # only for h11's count
        user.http.send(h11.EndOfMessage())
        writer = PatternWriter(user.transport, total, sample)
        writer.start()
        reply = await within(d, 90)
        self.assertEqual(reply.body.decode(), pattern_sha(total))
        self.assertLess(peak[0], 16 * MiB)
        self.assertGreater(peak[0], 0)

    @async_test
    async def test_download_64mib_streamed(self):
        """64 MiB down to a slow user arrive byte-exact while the relay
        holds only a bounded amount of them."""
        relay = await self.relay()
        total = 64 * MiB
        peak = [0]

        def sample():
            peak[0] = max(peak[0], relay.vhost.buffered_bytes())

        backend = listen(
            self, Factory.forProtocol(lambda: SourceBackend(total, sample))
        )
        await self.client(
            relay, http_proxy("down", backend, subdomain="down"), ["down"]
        )
        user = await raw_user(self, relay.http_port, StreamUser(total, sample))
        user.transport.write(
            b"GET /big HTTP/1.1\r\nHost: down." + SUBDOMAIN_HOST.encode() + b"\r\n\r\n"
        )
        digest = await within(user.reader.done, 90)
        self.assertEqual(user.status, b"HTTP/1.1 200 OK")
        self.assertEqual(digest, pattern_sha(total))
        self.assertLess(peak[0], 16 * MiB)
        self.assertGreater(peak[0], 0)

    @async_test
    async def test_pipelined_requests(self):
        """Requests written back to back, to two hosts, are answered in
        order; a HEAD answer carries no body; Connection: close closes."""
        relay = await self.relay()
        proxies = "".join(
            http_proxy(name, web_backend(self, name), subdomain=name)
            for name in ("alpha", "beta")
        )
        await self.client(relay, proxies, ["alpha", "beta"])
        user = await connect_user(self, relay.http_port)
        sent = [
            ("GET", "/1", "alpha", []),
            ("HEAD", "/2", "beta", []),
            ("GET", "/3", "beta", [("Connection", "close")]),
        ]
        for method, target, name, extra in sent:
            user.transport.write(
                f"{method} {target} HTTP/1.1\r\nHost: {name}."
                f"{SUBDOMAIN_HOST}\r\n".encode()
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in extra)
                + b"\r\n"
            )
        received = await within(user.closed)
        parser = h11.Connection(h11.CLIENT)
        parser.receive_data(received)
        parser.receive_data(b"")
        answers = []
        for method, target, name, extra in sent:
            parser.send(
                h11.Request(
                    method=method, target=target, headers=[("Host", name)] + extra
                )
            )
            parser.send(h11.EndOfMessage())
            body = b""
            while True:
                event = parser.next_event()
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, json.loads(body)["uri"] if body else ""))
            if parser.our_state is h11.DONE:
                parser.start_next_cycle()
        self.assertEqual(answers, [(200, "/1"), (200, ""), (200, "/3")])


def deferLater0():
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class MuxTests(VhostMixin, TestCase):
    mux = True


class NoMuxTests(VhostMixin, TestCase):
    mux = False


class TlsNoMuxTests(VhostMixin, TestCase):
    """Work connections are TLS connections of their own."""

    mux = False
    tls = True


class VhostServiceTests(TestCase):
    """The vhost as part of the server's start-up and proxy types."""

    @async_test
    async def test_http_needs_vhost_port(self):
        """Without vhost_http_port an http proxy is refused and says why."""
        relay = await Relay(self).start()
        self.assertIsNone(relay.server.vhost)
        client = await Client(
            self, relay.port, http_proxy("web", 1, subdomain="x")
        ).start()
        state = await within(client.client.when_proxy_status("web", "start error"))
        self.assertIn("vhost_http_port", state.error)

    def test_bind_failure_fails_startup(self):
        """A vhost port that cannot be bound stops start-up with one line."""
        taken = reactor.listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        self.addCleanup(taken.stopListening)
        number = taken.getHost().port
        config = parse_server_config(
            f"[common]\nbind_addr = 127.0.0.1\nvhost_http_port = {number}\n"
        )
        server = RelayServer(
            config, reactor, server_tls_options(), listen="tcp:0:interface=127.0.0.1"
        )
        with self.assertRaises(SystemExit) as caught:
            server.privilegedStartService()
        self.assertIn(f"cannot listen on 127.0.0.1:{number}", str(caught.exception))
        return server._listener.stopService()
