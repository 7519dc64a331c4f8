# -*- test-case-name: tests.unit.test_auth_hardening -*-
"""
The server's defences around authentication: replay refusal, the optional
timestamp skew, delayed answers to wrong tokens, caps on unauthenticated
connections, proxies and pooled work connections, and isolation between
clients.

The tests drive a RelayServer on a MemoryReactorClock with fake frp peers
on StringTransports (``tcp_mux = false``, so each peer is one frp
connection); tests.integration.test_auth_hardening runs those that need
real loopback sockets with tcp_mux on.
"""

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import ConfigError, parse_client_config, parse_server_config
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.server.guard import REPEAT_GRACE
from labrelay.server.service import RelayServer

from ..support.harness import LogCapture
from ..support.memory_server import NOW, TOKEN, Peer, login, work_conn


class ServerCase(SynchronousTestCase):
    """A RelayServer on a MemoryReactorClock whose clock reads NOW."""

    extra = ""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.peers = []
        self.server = self.make_server(self.extra)
        self.log = LogCapture(self)

    def make_server(self, extra):
        config = parse_server_config(
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\ntcp_mux = false\n" + extra
        )
        server = RelayServer(config, self.reactor, None)
        server.startService()
        self.addCleanup(self._stop, server)
        [(_, self.bind_factory, _, _)] = [
            s for s in self.reactor.tcpServers if s[0] == 7000
        ][-1:]
        return server

    def _stop(self, server):
        stopped = server.stopService()
        for _ in range(3):
            for peer in self.peers:
                if peer.transport.disconnecting:
                    peer.lose()
        for peer in self.peers:
            peer.lose()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def settle(self):
        """Deliver connectionLost to every peer the server closed."""
        for peer in self.peers:
            if peer.transport.disconnecting:
                peer.lose()

    def peer(self, host="192.0.2.1", port=None):
        return Peer(self, host, port or 40000 + len(self.peers))

    def logged_in(self, host="192.0.2.1", **fields):
        """A peer whose Login succeeded; its LoginResp is read."""
        peer = self.peer(host)
        peer.send(login(**fields))
        response, *peer.after_login = peer.read()
        self.assertIsInstance(response, messages.LoginResp)
        self.assertEqual(response.error, "")
        return peer

    def login_error(self, peer) -> str:
        [response] = peer.read()
        self.assertIsInstance(response, messages.LoginResp)
        self.assertTrue(peer.transport.disconnecting)
        return response.error

    def warnings(self, *substrings):
        return self.log.lines(*substrings, min_level=LogLevel.warn)

    def user_connects(self, port):
        """A user connection to a proxy's remote port; its transport."""
        factory = [s[1] for s in self.reactor.tcpServers if s[0] == port][-1]
        address = IPv4Address("TCP", "198.51.100.9", 50000)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", port), peerAddress=address
        )
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return transport


class ReplayTests(ServerCase):
    """Refusing a (timestamp, privilege_key) pair used before."""

    def test_login_replayed_later_is_refused(self):
        """The same Login presented again after the grace period gets a
        LoginResp error and a log line; no control is added."""
        first = self.logged_in()
        self.reactor.advance(REPEAT_GRACE + 1)
        replay = self.peer(host="203.0.113.5")
        replay.send(login())
        error = self.login_error(replay)
        self.assertIn("replayed credentials", error)
        self.assertEqual(list(self.server.registry.controls), [first.run_id])
        [line] = self.warnings("login refused: replayed credentials")
        self.assertIn(f"first used by run_id {first.run_id}", line)
        self.assertIn("203.0.113.5", line)

    def test_simultaneous_clients_sharing_a_token(self):
        """Two clients logging in within the same second (one token, so the
        same pair) both succeed: their Logins cannot be told from each
        other, and frp accepts both."""
        a = self.logged_in(host="192.0.2.1")
        self.reactor.advance(0.4)
        b = self.logged_in(host="192.0.2.2")
        self.assertNotEqual(a.run_id, b.run_id)
        self.assertEqual(len(self.server.registry.controls), 2)

    def test_reconnect_in_the_same_second(self):
        """A reconnect with the same pair and its run_id within the grace
        period replaces the old control."""
        first = self.logged_in()
        old = self.server.registry.controls[first.run_id]
        self.reactor.advance(0.3)
        self.logged_in(run_id=first.run_id)
        self.assertTrue(old.closed)
        self.assertIsNot(self.server.registry.controls[first.run_id], old)

    def test_fresh_timestamp_accepted_after_replay_refusal(self):
        """A fresh Login (new timestamp) works after a replay was refused,
        and the refusal did not count as a failed login."""
        self.logged_in()
        self.reactor.advance(30)
        replay = self.peer()
        replay.send(login())
        self.assertIn("replayed", self.login_error(replay))
        self.logged_in(timestamp=NOW + 30)
        self.assertEqual(self.server.throttle.failures_from("token", "192.0.2.1"), 0)


class SkewTests(ServerCase):
    """auth_timestamp_skew (labrelay's key; off by default)."""

    extra = "auth_timestamp_skew = 60\n"

    def test_old_timestamp_refused(self):
        """A Login whose timestamp is beyond the skew is refused, saying
        the client's clock is off."""
        peer = self.peer()
        peer.send(login(timestamp=NOW - 61))
        error = self.login_error(peer)
        self.assertIn("61s behind the server's clock", error)
        self.assertEqual(self.server.registry.controls, {})
        self.assertEqual(len(self.warnings("login refused", "behind")), 1)

    def test_within_skew_accepted(self):
        """A timestamp within the skew either way is accepted."""
        self.logged_in(timestamp=NOW - 60)
        self.logged_in(timestamp=NOW + 60)
        self.assertEqual(len(self.server.registry.controls), 2)

    def test_off_by_default(self):
        """Without the key a timestamp a year old is accepted (frp)."""
        server = self.make_server("")
        self.assertEqual(server.config.auth_timestamp_skew, 0)
        self.logged_in(timestamp=NOW - 365 * 86400)


class AuthenticatedWorkConnTests(ServerCase):
    """authenticate_new_work_conns and authenticate_heartbeats keys are
    checked for freshness too."""

    extra = (
        "authenticate_new_work_conns = true\n"
        "authenticate_heartbeats = true\nauth_timestamp_skew = 3600\n"
    )

    def test_work_conn_same_second_as_login_accepted(self):
        """frpc's first NewWorkConns repeat the Login's pair: accepted."""
        control = self.logged_in(pool_count=2)
        for _ in range(2):
            work = self.peer()
            work.send(work_conn(control.run_id))
            self.assertFalse(work.transport.disconnecting)
        pool = self.server.registry.controls[control.run_id].pool
        self.assertEqual(pool.idle_count, 2)

    def test_work_conn_replayed_later_refused(self):
        """A NewWorkConn replayed after the grace period is refused with
        StartWorkConn{error} and closed, and never pooled."""
        control = self.logged_in()
        self.peer().send(work_conn(control.run_id, timestamp=NOW + 5))
        self.reactor.advance(REPEAT_GRACE + 10)
        replay = self.peer()
        replay.send(work_conn(control.run_id, timestamp=NOW + 5))
        [answer] = replay.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")
        self.assertTrue(replay.transport.disconnecting)
        pool = self.server.registry.controls[control.run_id].pool
        self.assertEqual(pool.idle_count, 1)
        self.assertEqual(len(self.warnings("replayed credentials")), 1)

    def test_work_conn_outside_skew_refused(self):
        """A NewWorkConn with a stale timestamp is refused."""
        control = self.logged_in()
        work = self.peer()
        work.send(work_conn(control.run_id, timestamp=NOW - 7200))
        [answer] = work.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")
        self.assertEqual(len(self.warnings("behind the server's clock")), 1)

    def ping(self, control, timestamp):
        control.send(
            messages.Ping(
                timestamp=timestamp, privilege_key=privilege_key(TOKEN, timestamp)
            )
        )
        return [m for m in control.read() if isinstance(m, messages.Pong)]

    def test_fresh_pings_answered(self):
        """Pings with fresh timestamps get Pong{}."""
        control = self.logged_in()
        for t in (30, 60):
            self.reactor.advance(30)
            [pong] = self.ping(control, NOW + t)
            self.assertEqual(pong.error, "")

    def test_replayed_ping_closes_control(self):
        """A Ping replaying an old pair gets Pong{error} and the control
        is closed."""
        control = self.logged_in()
        self.reactor.advance(30)
        self.ping(control, NOW + 30)
        self.reactor.advance(60)
        [pong] = self.ping(control, NOW + 30)
        self.assertIn("replayed credentials", pong.error)
        self.assertTrue(control.transport.disconnecting)
        self.assertEqual(self.server.registry.controls, {})

    def test_work_conn_proof_replayed_as_login_refused(self):
        """#11: the fresh proof of a NewWorkConn (which anyone can make
        the client send by connecting to its public port) replayed at once
        as a Login with the victim's user and run_id is refused, and the
        victim's session survives."""
        victim = self.logged_in(user="alice")
        owner = self.server.registry.controls[victim.run_id]
        self.reactor.advance(3)
        work = self.peer()
        work.send(work_conn(victim.run_id, timestamp=NOW + 3))
        self.assertFalse(work.transport.disconnecting)
        attacker = self.peer("203.0.113.7")
        attacker.send(login(user="alice", run_id=victim.run_id, timestamp=NOW + 3))
        self.assertIn(
            "first used by a NewWorkConn, not a Login", self.login_error(attacker)
        )
        self.assertIs(self.server.registry.controls[victim.run_id], owner)
        self.assertFalse(owner.closed)
        self.assertEqual(owner.pool.idle_count, 1)

    def test_ping_proof_not_a_login(self):
        """A Ping's proof is not accepted as a Login either."""
        control = self.logged_in(user="alice")
        self.reactor.advance(30)
        [pong] = self.ping(control, NOW + 30)
        self.assertEqual(pong.error, "")
        again = self.peer("203.0.113.7")
        again.send(login(user="alice", run_id=control.run_id, timestamp=NOW + 30))
        self.assertIn("first used by a Ping", self.login_error(again))


class WorkConnBindingTests(ServerCase):
    """#7: a run_id alone does not let a stranger join a client's pool."""

    def victim(self):
        victim = self.logged_in(host="192.0.2.1")
        victim.send(
            messages.NewProxy(proxy_name="svc", proxy_type="tcp", remote_port=27030)
        )
        victim.read()
        return victim, self.server.registry.controls[victim.run_id]

    def test_work_conn_from_another_address_refused(self):
        """Without tcp_mux a NewWorkConn naming a live run_id from another
        address is refused and never pooled; a user then gets the
        client's own work connection."""
        victim, control = self.victim()
        thief = self.peer("203.0.113.7")
        thief.send(messages.NewWorkConn(run_id=victim.run_id))
        [answer] = thief.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")
        self.assertTrue(thief.transport.disconnecting)
        self.assertEqual(control.pool.idle_count, 0)
        [line] = self.warnings("work_conn_same_source")
        self.assertIn("from 203.0.113.7, but its client logged in from 192.0.2.1", line)
        own = self.peer("192.0.2.1")
        own.send(messages.NewWorkConn(run_id=victim.run_id))
        self.user_connects(27030)
        [start] = own.read()
        self.assertEqual(start.proxy_name, "svc")

    def test_refused_even_with_the_token(self):
        """With authenticate_new_work_conns a valid key from another
        address is refused too (the token is shared by every client)."""
        self.server = self.make_server("authenticate_new_work_conns = true\n")
        victim, control = self.victim()
        thief = self.peer("203.0.113.7")
        thief.send(work_conn(victim.run_id))
        [answer] = thief.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")
        self.assertEqual(control.pool.idle_count, 0)

    def test_relaxed_by_config(self):
        """work_conn_same_source = false accepts work connections from
        other addresses (a client whose NAT spreads its connections)."""
        self.server = self.make_server("work_conn_same_source = false\n")
        victim, control = self.victim()
        other = self.peer("203.0.113.7")
        other.send(messages.NewWorkConn(run_id=victim.run_id))
        self.assertFalse(other.transport.disconnecting)
        self.assertEqual(control.pool.idle_count, 1)


class IPv6SourceTests(ServerCase):
    """Token failures are counted per IPv6 /64, not per address."""

    def test_neighbour_in_the_same_64_held(self):
        """After a wrong token from one address of a /64, a right one from
        another address of it waits the source's delay."""
        wrong = Peer(self, "2001:db8:5:6::1", 40001)
        wrong.send(login(token="guess"))
        self.reactor.advance(0.5)
        self.assertTrue(self.login_error(wrong))
        right = Peer(self, "2001:db8:5:6::99", 40002)
        right.send(login())
        self.assertEqual(right.read(), [])
        self.reactor.advance(1)
        [answer] = right.read()
        self.assertEqual(answer.error, "")
        other = Peer(self, "2001:db8:5:7::1", 40003)
        other.send(login(timestamp=NOW + 1))
        [answer] = other.read()
        self.assertEqual(answer.error, "")


class BruteForceTests(ServerCase):
    """Delayed answers to wrong tokens, per source."""

    def wrong(self, host="192.0.2.66"):
        peer = self.peer(host)
        peer.send(login(token="guess"))
        return peer

    def test_answer_delayed(self):
        """A wrong token gets its LoginResp error only after 0.5 s, logged
        once with the source and the delay."""
        peer = self.wrong()
        self.assertEqual(peer.read(), [])
        self.assertFalse(peer.transport.disconnecting)
        self.reactor.advance(0.49)
        self.assertEqual(peer.read(), [])
        self.reactor.advance(0.01)
        self.assertEqual(
            self.login_error(peer),
            "token in login doesn't match token from configuration",
        )
        [line] = self.warnings("login refused: wrong token")
        self.assertIn("failure 1 in a row from 192.0.2.66, answered after 0.5s", line)

    def test_delays_grow(self):
        """Each further failure from the source waits twice as long."""
        for delay in (0.5, 1, 2, 4):
            peer = self.wrong()
            self.reactor.advance(delay - 0.01)
            self.assertEqual(peer.read(), [])
            self.reactor.advance(0.01)
            self.assertTrue(self.login_error(peer))
            self.settle()

    def test_pipelined_guesses_ignored(self):
        """Logins sent after a wrong one on the same connection are never
        checked (no guessing several keys per connection)."""
        peer = self.peer()
        peer.send(login(token="guess"), login())
        self.reactor.advance(0.5)
        self.assertEqual([m.error != "" for m in peer.read()], [True])
        self.assertEqual(self.server.registry.controls, {})

    def test_too_many_pending_refuses_even_the_right_token(self):
        """While auth_pending_per_source answers to a source are held, a
        Login from it is refused, 8 s later, without a key check -- the right
        token too, so the refusal tells nothing; hanging up does not free
        a place; another source is unaffected.  (Before, four pending
        answers refused every login of the address: a client behind a
        shared NAT was locked out by five guesses; the cap is now a
        config key, 32 by default.)"""
        self.server = self.make_server("auth_pending_per_source = 4\n")
        guesses = [self.wrong() for _ in range(4)]
        guesses[0].transport.loseConnection()
        self.settle()
        right = self.peer("192.0.2.66")
        right.send(login())
        self.assertEqual(right.read(), [])
        self.reactor.advance(8)
        self.assertIn("too many failed logins", self.login_error(right))
        self.assertEqual(self.server.registry.controls, {})
        self.logged_in(host="192.0.2.67")
        late = self.peer("192.0.2.66")
        late.send(login(timestamp=NOW + 8))
        self.assertEqual(late.read(), [])  # held: the source is in backoff
        self.reactor.advance(8)
        [answer] = late.read()
        self.assertEqual(answer.error, "")
        # one line for the source within the log's interval; the next line
        # (a later refusal) says how many were suppressed
        self.assertEqual(len(self.warnings("from 192.0.2.66")), 1)
        again = self.peer("192.0.2.66")
        again.send(login(token="guess"))
        self.reactor.advance(8)
        [line] = self.warnings("more failures from 192.0.2.66 suppressed")
        self.assertIn("(4 more failures", line)

    def test_right_token_held_not_refused(self):
        """#13: behind a NAT shared with a guesser (five wrong logins every
        2 s, under its own user name or the victim's), a right token is
        never refused: it is answered after the source's delay, within
        frpc's 10 s wait for LoginResp."""
        for name in ("mallory", "alice"):
            server = self.make_server("")
            waits = []
            for round_ in range(30):
                for _ in range(5):
                    self.peer("192.0.2.66").send(login(token="guess", user=name))
                if round_ % 3 == 2:
                    client = self.peer("192.0.2.66")
                    client.send(login(user="alice", timestamp=NOW + 2 * round_))
                    waited = 0.0
                    while not client.transport.value():
                        self.assertLess(waited, 9)
                        self.reactor.advance(0.25)
                        waited += 0.25
                    [answer] = client.read()
                    self.assertEqual(answer.error, "")
                    waits.append(waited)
                    client.transport.loseConnection()
                    remaining = 2 - waited % 2
                else:
                    remaining = 2
                self.reactor.advance(remaining)
                self.settle()
            self.assertEqual(len(waits), 10)
            self.assertLessEqual(max(waits), 8.25)
            self.reactor.advance(10)
            self.settle()
            server.throttle.close()

    def test_wrong_work_conn_key_delayed(self):
        """With authenticate_new_work_conns a wrong NewWorkConn key is a
        failure too: answered late and counted."""
        server = self.make_server("authenticate_new_work_conns = true\n")
        control = self.peer()
        control.send(login())
        run_id = control.read()[0].run_id
        work = self.peer()
        work.send(work_conn(run_id, token="guess"))
        self.assertEqual(work.read(), [])
        self.reactor.advance(0.5)
        [answer] = work.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")
        self.assertEqual(server.throttle.failures_from("token", "192.0.2.1"), 1)
        self.assertEqual(server.registry.controls[run_id].pool.idle_count, 0)

    def test_stop_cancels_delayed_answers(self):
        """Stopping the server leaves no delayed call behind (checked in
        the cleanup) and sends no late answer."""
        peer = self.wrong()
        self.server.throttle.close()
        self.reactor.advance(10)
        self.assertEqual(peer.read(), [])


class FloodTests(ServerCase):
    """Caps on unauthenticated connections."""

    extra = (
        "max_unauthenticated_per_source = 3\n"
        "max_unauthenticated_connections = 5\n"
        "unauthenticated_timeout = 60\n"
    )

    def test_per_source_cap(self):
        """The 4th pending connection from one address is closed at once;
        another address still gets in."""
        pending = [self.peer("192.0.2.9") for _ in range(3)]
        self.assertFalse(any(p.transport.disconnecting for p in pending))
        extra = self.peer("192.0.2.9")
        self.assertTrue(extra.refused_at_once)
        self.assertFalse(self.peer("192.0.2.10").transport.disconnecting)
        [line] = self.warnings("refusing new connections")
        self.assertIn("max_unauthenticated_per_source = 3", line)

    def test_total_cap(self):
        """Beyond 5 pending connections in all, a newcomer is admitted and
        the oldest pending connection of the address holding the most is
        closed instead (one rate-limited line)."""
        first, second = self.peer("192.0.2.20"), self.peer("192.0.2.20")
        others = [self.peer(f"192.0.2.{21 + i}") for i in range(3)]
        newcomer = self.peer("192.0.2.99")
        self.assertFalse(newcomer.transport.disconnecting)
        self.assertTrue(first.transport.disconnecting)
        self.assertFalse(any(p.transport.disconnecting for p in [second] + others))
        [line] = self.warnings("closing the oldest one from 192.0.2.20")
        self.assertIn("to admit one from 192.0.2.99", line)
        self.settle()
        self.assertEqual(self.server.guard.unauthenticated, 5)

    def test_slots_freed_by_login_and_close(self):
        """A successful Login, a closed connection and a pooled work
        connection each free a slot."""
        guard = self.server.guard
        pending = [self.peer("192.0.2.9") for _ in range(3)]
        pending[0].send(login())
        run_id = pending[0].read()[0].run_id
        self.assertEqual(guard.unauthenticated_from("192.0.2.9"), 2)
        pending[1].transport.loseConnection()
        self.settle()
        self.assertEqual(guard.unauthenticated_from("192.0.2.9"), 1)
        pending[2].send(work_conn(run_id))
        self.assertEqual(guard.unauthenticated_from("192.0.2.9"), 0)
        self.assertEqual(guard.unauthenticated, 0)

    def test_address_with_live_control_not_capped(self):
        """An address with a logged-in client may open more pending
        connections than the per-source cap (its pool of work
        connections), up to the whole total cap, and a flood from
        elsewhere evicts none of them."""
        self.logged_in(host="192.0.2.9")
        works = [self.peer("192.0.2.9") for _ in range(5)]
        flood = [self.peer(f"192.0.2.{50 + i % 2}") for i in range(4)]
        self.assertEqual([w.transport.disconnecting for w in works], [False] * 5)
        self.assertTrue(all(p.refused_at_once for p in flood))

    def test_refusal_log_rate_limited(self):
        """Many refusals make one line; after 10 s the next line says how
        many were held back."""
        for _ in range(3):
            self.peer("192.0.2.9")
        for _ in range(20):
            self.peer("192.0.2.9")
        self.assertEqual(len(self.warnings("refusing new connections")), 1)
        self.reactor.advance(10)
        self.peer("192.0.2.9")
        lines = self.warnings("refusing new connections")
        self.assertEqual(len(lines), 2)
        self.assertIn("19 more refused", lines[1])

    def test_defaults(self):
        """The caps default to 32 per source and 1024 in all."""
        config = parse_server_config("[common]\n")
        self.assertEqual(
            (
                config.max_unauthenticated_per_source,
                config.max_unauthenticated_connections,
                config.max_proxies_per_client,
                config.auth_timestamp_skew,
            ),
            (32, 1024, 256, 0),
        )


class ConfigTests(SynchronousTestCase):
    """labrelay's own server keys parse and validate."""

    def test_keys_parse(self):
        """Each key is read without a warning."""
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nauth_timestamp_skew = 300\n"
            "max_unauthenticated_per_source = 8\n"
            "max_unauthenticated_connections = 0\n"
            "max_proxies_per_client = 0x10\n"
        )
        self.assertEqual(
            (
                config.auth_timestamp_skew,
                config.max_unauthenticated_per_source,
                config.max_unauthenticated_connections,
                config.max_proxies_per_client,
                config.warnings,
            ),
            (300, 8, 0, 16, ()),
        )

    def test_negative_refused(self):
        """A negative value is refused, naming the key."""
        for key in ("auth_timestamp_skew", "max_proxies_per_client"):
            with self.assertRaises(ConfigError) as caught:
                parse_server_config(f"[common]\n{key} = -1\n")
            self.assertIn(
                f"[common] {key}: must not be negative", str(caught.exception)
            )

    def test_client_side_warns(self):
        """In frpc.ini the keys warn as server keys."""
        config = parse_client_config("[common]\nmax_proxies_per_client = 3\n")
        self.assertEqual(
            config.warnings,
            (
                "frpc.ini [common] max_proxies_per_client: a frps key, not used "
                "here; ignored",
            ),
        )


class ThrottleConfigTests(ServerCase):
    """The throttle's and the work-connection binding's keys."""

    def test_defaults(self):
        config = parse_server_config("[common]\n")
        self.assertEqual(
            (
                config.auth_pending_per_source,
                config.auth_failures_per_second,
                config.work_conn_same_source,
            ),
            (32, 50, True),
        )
        self.assertEqual(
            (self.server.throttle.max_pending, self.server.throttle.failure_budget),
            (32, 50),
        )

    def test_keys_parse_and_validate(self):
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nauth_pending_per_source = 8\n"
            "auth_failures_per_second = 0\nwork_conn_same_source = false\n"
        )
        self.assertEqual(
            (
                config.auth_pending_per_source,
                config.auth_failures_per_second,
                config.work_conn_same_source,
                config.warnings,
            ),
            (8, 0, False, ()),
        )
        for key in ("auth_pending_per_source", "auth_failures_per_second"):
            with self.assertRaises(ConfigError) as caught:
                parse_server_config(f"[common]\n{key} = -1\n")
            self.assertIn(
                f"[common] {key}: must not be negative", str(caught.exception)
            )
        with self.assertRaises(ConfigError) as caught:
            parse_server_config("[common]\nwork_conn_same_source = maybe\n")
        self.assertIn("work_conn_same_source", str(caught.exception))

    def test_reload_applies(self):
        """A reload changes the throttle's caps at once."""
        self.server.apply_config(
            attrs.evolve(
                self.server.config,
                auth_pending_per_source=3,
                auth_failures_per_second=7,
            )
        )
        self.assertEqual(
            (self.server.throttle.max_pending, self.server.throttle.failure_budget),
            (3, 7),
        )


class ClientLimitTests(ServerCase):
    """Caps on what one logged-in client may make the server hold."""

    extra = "max_proxies_per_client = 2\nmax_pool_count = 5\n"

    def new_proxy(self, control, name, port):
        control.send(
            messages.NewProxy(proxy_name=name, proxy_type="tcp", remote_port=port)
        )
        [response] = [m for m in control.read() if isinstance(m, messages.NewProxyResp)]
        return response

    def test_proxy_cap(self):
        """The 3rd proxy of a client is refused by name; another client
        may still register its own."""
        a = self.logged_in()
        self.assertEqual(self.new_proxy(a, "a1", 27001).error, "")
        self.assertEqual(self.new_proxy(a, "a2", 27002).error, "")
        error = self.new_proxy(a, "a3", 27003).error
        self.assertIn("max_proxies_per_client (2)", error)
        b = self.logged_in(host="192.0.2.2", timestamp=NOW + 1)
        self.assertEqual(self.new_proxy(b, "b1", 27004).error, "")

    def test_pool_count_clamped(self):
        """A client claiming pool_count 1,000,000 is asked for
        max_pool_count connections and may park at most
        max_pool_count + 10; extra NewWorkConns are closed."""
        control = self.logged_in(pool_count=1_000_000)
        asked = [m for m in control.after_login if isinstance(m, messages.ReqWorkConn)]
        self.assertEqual(len(asked), 5)
        works = []
        for _ in range(20):
            work = self.peer()
            work.send(work_conn(control.run_id))
            works.append(work)
        pool = self.server.registry.controls[control.run_id].pool
        self.assertEqual(pool.idle_count, 15)
        self.assertEqual(
            [w.transport.disconnecting for w in works], [False] * 15 + [True] * 5
        )


class IsolationTests(ServerCase):
    """One client cannot take over or use another's state."""

    def test_run_id_of_another_user_refused(self):
        """A valid Login naming the live run_id of a client of another
        user is refused; the owner's control stays up."""
        alice = self.logged_in(user="alice")
        owner = self.server.registry.controls[alice.run_id]
        mallory = self.peer("203.0.113.7")
        mallory.send(login(user="mallory", run_id=alice.run_id, timestamp=NOW + 1))
        self.assertIn("belongs to a client of another user", self.login_error(mallory))
        self.assertIs(self.server.registry.controls[alice.run_id], owner)
        self.assertFalse(owner.closed)
        [line] = self.warnings("belongs to a client of another user")
        self.assertIn("user 'alice'", line)

    def test_takeover_needs_the_token(self):
        """A Login naming a live run_id with a wrong token replaces
        nothing; the same user with the token replaces the old control."""
        alice = self.logged_in(user="alice")
        owner = self.server.registry.controls[alice.run_id]
        thief = self.peer("203.0.113.7")
        thief.send(login(token="guess", user="alice", run_id=alice.run_id))
        self.reactor.advance(0.5)
        self.assertIn("doesn't match", self.login_error(thief))
        self.assertFalse(owner.closed)
        self.logged_in(user="alice", run_id=alice.run_id, timestamp=NOW + 1)
        self.assertTrue(owner.closed)

    def test_run_id_of_ended_client_reusable(self):
        """Once a client's control has ended, its run_id may log in again
        under any user (frp trusts the run_id; nothing is live to take)."""
        alice = self.logged_in(user="alice")
        alice.transport.loseConnection()
        self.settle()
        self.logged_in(user="bob", run_id=alice.run_id, timestamp=NOW + 1)

    def test_work_conn_joins_only_its_own_pool(self):
        """A work connection of client A is never used for client B's
        proxy: B's user waits for B's own work connection."""
        a = self.logged_in(host="192.0.2.1")
        b = self.logged_in(host="192.0.2.2", timestamp=NOW + 1)
        b.send(
            messages.NewProxy(proxy_name="b-svc", proxy_type="tcp", remote_port=27010)
        )
        b.read()
        a_work = self.peer("192.0.2.1")
        a_work.send(work_conn(a.run_id))
        user = self.user_connects(27010)
        self.assertEqual(a_work.read(), [])
        self.assertEqual(self.server.registry.controls[a.run_id].pool.idle_count, 1)
        self.assertIn("ReqWorkConn", [m.name for m in b.read()])
        b_work = self.peer("192.0.2.2")
        b_work.send(work_conn(b.run_id, timestamp=NOW + 1))
        [start] = b_work.read()
        self.assertEqual(start.proxy_name, "b-svc")
        self.assertEqual(a_work.read(), [])
        self.assertFalse(user.disconnecting)

    def test_close_proxy_of_another_client_ignored(self):
        """CloseProxy naming another client's proxy leaves it registered
        and listening; the owner can still close it."""
        a = self.logged_in(host="192.0.2.1")
        a.send(
            messages.NewProxy(proxy_name="a-svc", proxy_type="tcp", remote_port=27020)
        )
        a.read()
        proxy = self.server.registry.proxies["a-svc"]
        b = self.logged_in(host="192.0.2.2", timestamp=NOW + 1)
        b.send(messages.CloseProxy(proxy_name="a-svc"))
        self.assertIs(self.server.registry.proxies.get("a-svc"), proxy)
        self.assertTrue(self.server.ports.taken(27020))
        a.send(messages.CloseProxy(proxy_name="a-svc"))
        self.assertNotIn("a-svc", self.server.registry.proxies)
        self.assertFalse(self.server.ports.taken(27020))
