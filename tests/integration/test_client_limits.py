# -*- test-case-name: tests.integration.test_client_limits -*-
"""
The limits on logged-in clients and their proxies, end to end with real
sockets: Logins per TCP connection (a yamux session can carry many
streams, frpc uses one), clients per ``user`` and per source address,
proxies in the whole server; and the cost of a logout, which must depend
on the client's own proxies only.
"""

import time

import attrs
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.server.reload import ReloadResult, config_changes, merged_config
from labrelay.server.vhost import Vhost

from ..support.fakes import NoScan
from ..support.frp_peer import FrpPeer, login
from ..support.harness import LogCapture, Relay, async_test, wait_until, within


class LimitsMixin:
    timeout = 60

    async def relay(self, extra="", mux=True):
        self.relay = await Relay(self, extra, mux=mux).start()
        return self.relay

    async def session(self, source="127.0.0.1"):
        """A fresh yamux session to the relay from *source*."""
        session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.relay.port, timeout=5, bindAddress=(source, 0)
        )
        await within(endpoint.connect(Factory.forProtocol(lambda: session)))

        def close():
            d = session.when_closed()
            session.close()
            return within(d)

        self.addCleanup(close)
        return session

    async def attempt(self, session, **fields):
        """One Login on a new stream of *session*: (LoginResp, peer)."""
        peer = FrpPeer()
        session.open_stream(peer)
        peer.send(login(pool_count=0, **fields))
        [response] = await within(peer.wait_messages(messages.LoginResp))
        return response, peer

    async def client(self, source="127.0.0.1", **fields):
        """A new session with one Login: its LoginResp."""
        response, _ = await self.attempt(await self.session(source), **fields)
        return response


class LoginLimitTests(LimitsMixin, TestCase):
    @async_test
    async def test_one_login_per_connection(self):
        """200 Logins over one yamux session: the first is accepted, each
        other is refused naming max_logins_per_connection, and the relay
        holds one client; a new session still logs in."""
        relay = await self.relay()
        session = await self.session()
        answers = []
        for _ in range(200):
            response, peer = await self.attempt(session)
            answers.append(response.error)
            if response.error:
                await within(peer.closed)
        self.assertEqual(answers[0], "")
        self.assertEqual(len(set(answers[1:])), 1, set(answers))
        self.assertIn("max_logins_per_connection", answers[1])
        self.assertEqual(len(relay.server.registry.controls), 1)
        self.assertEqual((await self.client()).error, "")
        self.assertEqual(len(relay.server.registry.controls), 2)

    @async_test
    async def test_logins_per_connection_configurable(self):
        """max_logins_per_connection = 3 lets three through; 0 turns the
        cap off."""
        relay = await self.relay("max_logins_per_connection = 3\n")
        session = await self.session()
        errors = [(await self.attempt(session))[0].error for _ in range(4)]
        self.assertEqual(errors[:3], ["", "", ""])
        self.assertIn("max_logins_per_connection", errors[3])
        self.assertEqual(len(relay.server.registry.controls), 3)

    @async_test
    async def test_clients_per_user(self):
        """max_clients_per_user counts live clients per user: the third
        alice is refused, bob is not, and a logout frees a slot."""
        relay = await self.relay("max_clients_per_user = 2\n")
        first = await self.session()
        self.assertEqual((await self.attempt(first, user="alice"))[0].error, "")
        self.assertEqual((await self.client(user="alice")).error, "")
        refused = await self.client(user="alice")
        self.assertIn("max_clients_per_user", refused.error)
        self.assertEqual((await self.client(user="bob")).error, "")
        closed = first.when_closed()
        first.close()
        await within(closed)
        await within(wait_until(lambda: len(relay.server.registry.controls) == 2))
        self.assertEqual((await self.client(user="alice")).error, "")

    @async_test
    async def test_clients_per_source(self):
        """max_clients_per_source counts live clients per source address
        (127.0.0.2 is refused its third; 127.0.0.3 is another source)."""
        await self.relay("max_clients_per_source = 2\n")
        for _ in range(2):
            self.assertEqual((await self.client("127.0.0.2")).error, "")
        refused = await self.client("127.0.0.2")
        self.assertIn("max_clients_per_source", refused.error)
        self.assertEqual((await self.client("127.0.0.3")).error, "")

    @async_test
    async def test_reconnect_with_same_run_id_is_not_counted_twice(self):
        """A client logging in again with its run_id (the old session not
        yet gone) replaces itself even at max_clients_per_user = 1."""
        relay = await self.relay(
            "max_clients_per_user = 1\nmax_clients_per_source = 1\n"
        )
        first = await self.client(user="alice")
        second = await self.client(user="alice", run_id=first.run_id)
        self.assertEqual((second.error, second.run_id), ("", first.run_id))
        self.assertEqual(list(relay.server.registry.controls), [first.run_id])

    @async_test
    async def test_reload_applies_to_the_next_login(self):
        """The limits are reloadable: a lower max_clients_per_user from a
        reload refuses the next login and leaves the live ones alone."""
        relay = await self.relay()
        self.assertEqual((await self.client(user="alice")).error, "")
        self.assertEqual((await self.client(user="alice")).error, "")
        new = attrs.evolve(relay.server.config, max_clients_per_user=1, bind_port=7001)
        merged = merged_config(relay.server.config, new)
        self.assertEqual(
            config_changes(relay.server.config, new),
            ReloadResult(("max_clients_per_user",), ("bind_port",)),
        )
        relay.server.apply_config(merged)
        refused = await self.client(user="alice")
        self.assertIn("max_clients_per_user", refused.error)
        self.assertEqual(len(relay.server.registry.controls), 2)

    @async_test
    async def test_defaults(self):
        """The defaults: 1 login per connection, 256 clients per user, 128
        per source, 10,000 proxies in all."""
        config = (await self.relay()).config
        self.assertEqual(
            (
                config.max_logins_per_connection,
                config.max_clients_per_user,
                config.max_clients_per_source,
                config.max_proxies_total,
            ),
            (1, 256, 128, 10000),
        )


class ProxyLimitTests(LimitsMixin, TestCase):
    @async_test
    async def test_proxies_total(self):
        """max_proxies_total counts every client's proxies."""
        relay = await self.relay("max_proxies_total = 3\n")
        peers = []
        for user in ("a", "b"):
            session = await self.session()
            response, peer = await self.attempt(session, user=user)
            self.assertEqual(response.error, "")
            peers.append(peer)
        for n in range(4):
            peers[n % 2].send(
                messages.NewProxy(proxy_name=f"p{n}", proxy_type="tcp", remote_port=0)
            )
        answers = await within(
            peers[0].wait_messages(messages.NewProxyResp, 2)
        ) + await within(peers[1].wait_messages(messages.NewProxyResp, 2))
        errors = sorted(a.error for a in answers)
        self.assertEqual(errors[:3], ["", "", ""])
        self.assertIn("max_proxies_total (3)", errors[3])
        self.assertEqual(len(relay.server.registry.proxies), 3)


class LogoutCostTests(LimitsMixin, TestCase):
    """A client's logout touches its own routes, not everyone's."""

    @async_test
    async def test_logout_with_many_routes(self):
        """Among 20,000 routes of other clients, a client with 20 http
        proxies of 500 routes each logs out without scanning the route
        table (a dict that refuses iteration would fail it), within a
        bound, and leaves the others' routes in place."""
        relay = await self.relay(
            "vhost_http_port = 0\nmax_proxies_per_client = 0\nmax_routes_total = 0\n"
        )
        server = relay.server
        # a vhost without a listener: only its route table is used
        server.vhost = Vhost(server.context)
        log = LogCapture(self)
        others = []
        for user in ("other", "victim"):
            response, peer = await self.attempt(await self.session(), user=user)
            self.assertEqual(response.error, "")
            others.append(peer)
        other, victim = others
        for n in range(40):
            other.send(_http(f"o{n}", [f"o{n}-{d}.example" for d in range(10)], 50))
        for n in range(20):
            victim.send(_http(f"v{n}", [f"v{n}-{d}.example" for d in range(5)], 100))
        await within(other.wait_messages(messages.NewProxyResp, 40), 30)
        answers = await within(victim.wait_messages(messages.NewProxyResp, 20), 30)
        self.assertEqual([a.error for a in answers if a.error], [])
        routes = server.vhost.routes
        self.assertEqual(len(routes), 30000)
        _forbid_scans(routes)
        (control,) = [
            c for c in server.registry.controls.values() if c.user == "victim"
        ]
        spent = []
        teardown = control._teardown

        def timed(why):
            started = time.monotonic()
            teardown(why)
            spent.append(time.monotonic() - started)

        control._teardown = timed
        victim.transport.loseConnection()
        await within(wait_until(lambda: control.closed))
        self.assertEqual(log.failures(), [])
        self.assertEqual(len(routes), 20000)
        self.assertEqual(
            routes.lookup("o3-7.example", "/l49"), server.registry.proxies["o3"]
        )
        self.assertLess(spent[0], 1.0)


def _http(name, domains, locations):
    return messages.NewProxy(
        proxy_name=name,
        proxy_type="http",
        custom_domains=domains,
        locations=[f"/l{n}" for n in range(locations)],
    )


def _forbid_scans(routes):
    routes._domains = NoScan(routes._domains)
    for domain, users in list(dict.items(routes._domains)):
        dict.__setitem__(routes._domains, domain, NoScan(users))
