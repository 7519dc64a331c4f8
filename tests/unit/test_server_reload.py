# -*- test-case-name: tests.unit.test_server_reload -*-
"""
Live reload of the server's config (labrelay.server.reload, SIGHUP): which
keys apply at once and to whom, which are reported as needing a restart,
and that a bad file changes nothing.

Most tests drive a RelayServer run from a config file on a
MemoryReactorClock with fake frp peers (``tcp_mux = false``, the peers of
tests.support.memory_server); the token, dashboard and SIGHUP tests use real
loopback sockets.
"""

import io

import attrs
from twisted.logger import Logger, LogLevel, globalLogPublisher, textFileLogObserver
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import ConfigError, ServerConfig, parse_server_config
from labrelay.logs import LevelFilteredObserver
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.sdnotify import Notifier
from labrelay.server.reload import RELOADABLE, config_changes, merged_config
from labrelay.server.service import RelayServer

from ..support.config_files import rewrite
from ..support.memory_server import BASE, NOW, TOKEN, MemoryServerCase, login, work_conn

NEW_TOKEN = "reloaded-token"


class PureTests(SynchronousTestCase):
    """config_changes and merged_config."""

    def test_reloadable_keys_exist(self):
        """Every reloadable key is a ServerConfig field (no typo)."""
        names = {field.name for field in attrs.fields(ServerConfig)}
        self.assertEqual(RELOADABLE - names, set())

    def test_changes_split(self):
        """Changed keys are split into reloadable and restart-needing, in
        field order; source and warnings are not keys."""
        old = parse_server_config(BASE, source="a.ini")
        new = parse_server_config(
            BASE.replace("7000", "7001") + "max_pool_count = 2\n"
            "subdomain_host = x.test\nlog_level = debug\nfoo = 1\n",
            source="b.ini",
        )
        result = config_changes(old, new)
        self.assertEqual(result.applied, ("max_pool_count", "log_level"))
        self.assertEqual(result.restart_keys, ("bind_port", "subdomain_host"))

    def test_merged_takes_only_reloadable(self):
        """The merged config has the new reloadable values and the old
        everything else."""
        old = parse_server_config(BASE)
        new = parse_server_config(BASE.replace("7000", "7001") + "max_pool_count = 2\n")
        merged = merged_config(old, new)
        self.assertEqual((merged.bind_port, merged.max_pool_count), (7000, 2))
        self.assertEqual(config_changes(old, merged).restart_keys, ())


class TokenTests(MemoryServerCase):
    """A new token is for new logins; clients logged in keep theirs."""

    extra = "authenticate_new_work_conns = true\nauthenticate_heartbeats = true\n"

    def test_new_token(self):
        """After the reload the old token is refused and the new one
        accepted for logins, while the live client's work connections and
        Pings, signed with the old token, are still accepted."""
        live = self.logged_in()
        result = self.reload(self.extra, token=NEW_TOKEN)
        self.assertEqual(result.applied, ("token",))

        old = self.peer("192.0.2.2")
        old.send(login(timestamp=NOW + 1))
        self.assertIn("token in login doesn't match", self.login_error(old))
        new = self.peer("192.0.2.3")
        new.send(login(token=NEW_TOKEN, timestamp=NOW + 2))
        self.assertEqual(new.read()[0].error, "")

        work = self.peer()
        work.send(work_conn(live.run_id, timestamp=NOW + 9))
        self.assertFalse(work.transport.disconnecting)
        self.assertEqual(self.control(live).pool.idle_count, 1)
        live.send(
            messages.Ping(
                timestamp=NOW + 9, privilege_key=privilege_key(TOKEN, NOW + 9)
            )
        )
        [pong] = [m for m in live.read() if isinstance(m, messages.Pong)]
        self.assertEqual(pong.error, "")
        self.assertIn(live.run_id, self.server.registry.controls)

        # a new client's work connection needs the new token
        stale = self.peer("192.0.2.3")
        stale.send(work_conn(new.run_id, timestamp=NOW + 9))
        self.reactor.advance(8)
        [answer] = stale.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")

    def test_secrets_not_logged(self):
        """The reload log names the token key, never a token value."""
        self.reload(self.extra, token=NEW_TOKEN)
        text = "\n".join(t for _, t, _ in self.log.events)
        self.assertIn("token", text)
        self.assertNotIn(NEW_TOKEN, text)
        self.assertNotIn(TOKEN, text)


class NewLoginSettingsTests(MemoryServerCase):
    """authenticate_*, heartbeat_timeout, user_conn_timeout and
    max_pool_count apply to the logins after the reload."""

    extra = "heartbeat_timeout = 90\n"

    def test_authentication_flags(self):
        """Turning authenticate_* on leaves the live client's unsigned work
        connections and Pings accepted, and holds a new client to it."""
        live = self.logged_in()
        self.reload(
            "heartbeat_timeout = 90\n"
            "authenticate_new_work_conns = true\n"
            "authenticate_heartbeats = true\n"
        )
        unsigned = self.peer()
        unsigned.send(messages.NewWorkConn(run_id=live.run_id))
        self.assertFalse(unsigned.transport.disconnecting)
        self.assertEqual(self.control(live).pool.idle_count, 1)
        live.send(messages.Ping())
        [pong] = [m for m in live.read() if isinstance(m, messages.Pong)]
        self.assertEqual(pong.error, "")

        later = self.logged_in(host="192.0.2.2", timestamp=NOW + 1)
        self.assertTrue(self.control(later).authenticate_heartbeats)
        refused = self.peer("192.0.2.2")
        refused.send(messages.NewWorkConn(run_id=later.run_id))
        self.reactor.advance(8)
        [answer] = refused.read()
        self.assertEqual(answer.error, "invalid NewWorkConn")

    def test_live_client_keeps_its_heartbeat_timeout(self):
        """After a reload turns the heartbeat timeout off, a live client's
        Pings still renew its own 90 s (no instant expiry), while a new
        client has none."""
        live = self.logged_in()
        self.reload("heartbeat_timeout = 0\n")
        later = self.logged_in(host="192.0.2.2", timestamp=NOW + 1)
        self.reactor.advance(60)
        live.send(messages.Ping())
        self.reactor.advance(89)
        self.assertIn(live.run_id, self.server.registry.controls)
        self.reactor.advance(1)
        self.assertNotIn(live.run_id, self.server.registry.controls)
        self.reactor.advance(1000)
        self.assertIn(later.run_id, self.server.registry.controls)

    def test_timeouts_and_pool(self):
        """A client logging in after the reload gets the new heartbeat
        timeout, user_conn_timeout and max_pool_count; the live one keeps
        the old ones."""
        live = self.logged_in(pool_count=3)
        self.assertEqual(
            sum(isinstance(m, messages.ReqWorkConn) for m in live.after_login), 3
        )
        self.reload(
            "heartbeat_timeout = 20\nuser_conn_timeout = 4\nmax_pool_count = 1\n"
        )
        later = self.logged_in(host="192.0.2.2", timestamp=NOW + 1, pool_count=3)
        self.assertEqual(
            sum(isinstance(m, messages.ReqWorkConn) for m in later.after_login), 1
        )
        self.assertEqual(self.new_proxy(live, "old", 6001).error, "")
        self.assertEqual(self.new_proxy(later, "new", 6002).error, "")
        old_user = self.user_of(6001)
        new_user = self.user_of(6002)
        self.reactor.advance(4)
        self.assertTrue(new_user.disconnecting)  # 4 s
        self.assertFalse(old_user.disconnecting)  # still within 10 s
        self.reactor.advance(6)
        self.assertTrue(old_user.disconnecting)
        self.reactor.advance(10)  # 20 s: later's heartbeat
        self.assertNotIn(later.run_id, self.server.registry.controls)
        self.assertIn(live.run_id, self.server.registry.controls)
        self.reactor.advance(70)  # 90 s: live's
        self.assertNotIn(live.run_id, self.server.registry.controls)


class LimitTests(MemoryServerCase):
    """Limits on new proxies and unauthenticated connections, and the
    timestamp skew, apply from the next request on."""

    def test_proxy_limits(self):
        """allow_ports, max_ports_per_client, max_proxies_per_client and
        detailed_errors_to_client each change the answer to the next
        NewProxy; proxies already running stay."""
        peer = self.logged_in()
        self.assertEqual(self.new_proxy(peer, "p1", 6001).error, "")
        self.reload("allow_ports = 6002-6004\n")
        self.assertEqual(self.new_proxy(peer, "p2", 6005).error, "port not allowed")
        self.assertIn("p1", self.server.registry.proxies)
        self.assertEqual(self.new_proxy(peer, "p3", 6002).error, "")
        self.reload("allow_ports = 6002-6004\nmax_ports_per_client = 2\n")
        self.assertEqual(
            self.new_proxy(peer, "p4", 6003).error, "exceed the max_ports_per_client"
        )
        self.reload("allow_ports = 6002-6004\nmax_proxies_per_client = 2\n")
        self.assertIn("max_proxies_per_client", self.new_proxy(peer, "p5", 6003).error)
        self.reload(
            "allow_ports = 6002-6004\nmax_proxies_per_client = 2\n"
            "detailed_errors_to_client = false\n"
        )
        self.assertEqual(self.new_proxy(peer, "p6", 6003).error, "new proxy [p6] error")
        self.assertEqual(sorted(self.server.registry.proxies), ["p1", "p3"])

    def test_unauthenticated_caps(self):
        """A lower max_unauthenticated_per_source refuses the next
        connection over it; a lower max_unauthenticated_connections makes
        the next connection evict the oldest pending one; a shorter
        unauthenticated_timeout bounds the next connection."""
        oldest = self.peer("192.0.2.9")
        self.reload("max_unauthenticated_per_source = 1\n")
        self.assertTrue(self.peer("192.0.2.9").refused_at_once)
        self.assertFalse(self.peer("192.0.2.10").refused_at_once)
        self.reload("max_unauthenticated_connections = 2\n")
        self.assertFalse(self.peer("192.0.2.11").refused_at_once)
        self.assertTrue(oldest.transport.disconnecting)
        self.reload(
            "max_unauthenticated_connections = 2\nunauthenticated_timeout = 3\n"
        )
        late = self.peer("192.0.2.12")
        self.reactor.advance(3)
        self.assertTrue(late.transport.disconnecting)

    def test_timestamp_skew(self):
        """auth_timestamp_skew turned on refuses a Login an hour old."""
        self.logged_in(timestamp=NOW - 3600)
        self.reload("auth_timestamp_skew = 60\n")
        peer = self.peer("192.0.2.2")
        peer.send(login(timestamp=NOW - 3599))
        self.assertIn("behind the server's clock", peer.read()[0].error)
        self.assertEqual(self.server.replays.skew, 60)


class LogLevelTests(MemoryServerCase):
    """log_level changes the running log filter."""

    def test_log_level(self):
        """Debug events are dropped before a reload to log_level = debug
        and written after it; the file's observer is changed in place."""
        out = io.StringIO()
        observer = LevelFilteredObserver(textFileLogObserver(out), "info")
        self.server.log_observer = observer
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        probe = Logger(namespace="labrelay.probe")
        probe.debug("before-reload")
        result = self.reload("log_level = debug\n")
        probe.debug("after-reload")
        self.assertEqual(result.applied, ("log_level",))
        self.assertEqual(observer.level, "debug")
        self.assertNotIn("before-reload", out.getvalue())
        self.assertIn("after-reload", out.getvalue())


class RestartKeyTests(MemoryServerCase):
    """Keys that need a restart are named and keep their running value."""

    def test_bind_port_needs_restart(self):
        """A changed bind_port (and subdomain_host) is logged as needing a
        restart; the server keeps its port and value, and reloadable keys
        in the same file still apply."""
        rewrite(
            self.path,
            BASE.replace("7000", "7100")
            + "subdomain_host = x.test\nmax_pool_count = 2\n",
        )
        result = self.server.reload()
        self.assertEqual(result.restart_keys, ("bind_port", "subdomain_host"))
        self.assertEqual(result.applied, ("max_pool_count",))
        [line] = self.log.lines("needs a restart", min_level=LogLevel.warn)
        self.assertIn("bind_port, subdomain_host", line)
        config = self.server.config
        self.assertEqual(
            (config.bind_port, config.subdomain_host, config.max_pool_count),
            (7000, "", 2),
        )
        self.assertEqual([s[0] for s in self.reactor.tcpServers], [7000])

    def test_bad_file_changes_nothing(self):
        """A file that does not parse is an error line; nothing changes."""
        before = self.server.config
        rewrite(self.path, BASE + "max_pool_count = many\n")
        with self.assertRaises(ConfigError):
            self.server.reload()
        self.assertIs(self.server.config, before)
        [line] = self.log.lines("nothing changed", min_level=LogLevel.error)
        self.assertIn("max_pool_count", line)

    def test_no_file(self):
        """A server built without a config path cannot reload."""
        server = RelayServer(
            parse_server_config(BASE), self.reactor, None, notifier=Notifier(None)
        )
        with self.assertRaises(ConfigError):
            server.reload()


class TomlFileTests(MemoryServerCase):
    """A relay started from frps.toml reloads it as TOML, in frp's strict
    mode unless twistd was given ``--strict_config=false``."""

    def setUp(self):
        super().setUp()
        from ..support.formats import in_format

        text, name = in_format(BASE, "frps.ini", "toml")
        self.path = self.path[: -len("frps.ini")] + name
        rewrite(self.path, text)
        self.server.config_path = self.path
        self.toml = text

    def test_reload_applies_toml(self):
        self.assertIn("[transport]\n", self.toml)
        rewrite(
            self.path,
            self.toml.replace("[transport]\n", "[transport]\nmaxPoolCount = 3\n"),
        )
        result = self.server.reload()
        self.assertEqual(result.applied, ("max_pool_count",))
        self.assertEqual(self.server.config.max_pool_count, 3)

    def test_unknown_key_strict_then_not(self):
        rewrite(self.path, "maxPoolCont = 3\n" + self.toml)
        before = self.server.config
        with self.assertRaises(ConfigError) as caught:
            self.server.reload()
        self.assertIn("maxPoolCont", str(caught.exception))
        self.assertIs(self.server.config, before)
        self.server.strict_config = False
        self.server.reload()
        self.assertTrue(
            any("maxPoolCont" in w for w in self.server.config.warnings),
            self.server.config.warnings,
        )
