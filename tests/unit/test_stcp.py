# -*- test-case-name: tests.unit.test_stcp -*-
"""
stcp on a memory server (task-driven clock): the visitor signature,
NewVisitorConn's checks in frp's order with frp's error texts,
allow_users, the throttle on wrong keys, the visitor bounds; and the
config of stcp proxies and visitors.
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from labrelay.client.visitor import sign_key
from labrelay.config import ConfigError, parse_client_config
from labrelay.protocol import messages
from labrelay.server import stcp_proxy
from labrelay.server.stcp_proxy import allowed_users
from labrelay.server.visitor import SUMMARY

from ..support.memory_server import NOW, MemoryServerCase

SK = "abcdefg"


class SignatureTests(SynchronousTestCase):
    def test_frp_formula(self):
        """md5_hex(sk + decimal(timestamp)), as frp's GetAuthKey."""
        self.assertEqual(
            sign_key(SK, 1_700_000_000),
            hashlib.md5(b"abcdefg1700000000").hexdigest(),
        )
        self.assertEqual(
            sign_key("", 0), "cfcd208495d565ef66e7dff9f98764da"
        )  # md5("0")

    def test_allowed_users(self):
        """Empty allow_users: the owner's own user only (frp)."""
        self.assertEqual(allowed_users("alice", None), ("alice",))
        self.assertEqual(allowed_users("alice", []), ("alice",))
        self.assertEqual(allowed_users("alice", ["*"]), ("*",))
        self.assertEqual(allowed_users("", ["bob", 3]), ("bob",))


class VisitorCheckTests(MemoryServerCase):
    def owner(self, name="ssh", sk=SK, allow_users=None, user="alice"):
        peer = self.logged_in(user=user)
        peer.send(
            messages.NewProxy(
                proxy_name=name, proxy_type="stcp", sk=sk, allow_users=allow_users
            )
        )
        [response] = [m for m in peer.read() if isinstance(m, messages.NewProxyResp)]
        self.assertEqual(response.error, "")
        return peer

    def visit(self, run_id, name="ssh", sk=SK, timestamp=NOW, host="192.0.2.9"):
        peer = self.peer(host)
        peer.send(
            messages.NewVisitorConn(
                run_id=run_id,
                proxy_name=name,
                sign_key=sign_key(sk, timestamp),
                timestamp=timestamp,
            )
        )
        return peer

    def answer(self, peer, wait=0.0):
        self.reactor.advance(wait)
        [response] = peer.read()
        self.assertIsInstance(response, messages.NewVisitorConnResp)
        return response.error

    def test_admitted(self):
        """The right key from the owner's own user: an empty error at once,
        and the owner is asked for a work connection."""
        owner = self.owner()
        visitor_client = self.logged_in(user="alice")
        peer = self.visit(visitor_client.run_id)
        self.assertEqual(self.answer(peer), "")
        self.assertFalse(peer.transport.disconnecting)
        self.assertIn(messages.ReqWorkConn(), owner.read())

    def test_no_port(self):
        """An stcp proxy listens nowhere: its remote address is empty."""
        peer = self.logged_in(user="alice")
        peer.send(messages.NewProxy(proxy_name="ssh", proxy_type="stcp", sk=SK))
        [response] = [m for m in peer.read() if isinstance(m, messages.NewProxyResp)]
        self.assertEqual((response.error, response.remote_addr), ("", ""))

    def test_empty_sk_refused(self):
        peer = self.logged_in(user="alice")
        peer.send(messages.NewProxy(proxy_name="ssh", proxy_type="stcp"))
        [response] = [m for m in peer.read() if isinstance(m, messages.NewProxyResp)]
        self.assertEqual(response.error, "an stcp proxy needs a secret key (sk)")

    def test_unknown_run_id_at_once(self):
        self.owner()
        peer = self.visit("nope")
        self.assertEqual(self.answer(peer), "no client control found for run id [nope]")
        self.assertTrue(peer.transport.disconnecting)
        peer = self.visit("")
        self.assertEqual(self.answer(peer), "no client control found for run id []")

    def test_wrong_sk_throttled(self):
        """A wrong key is answered with frp's text after the throttle's
        delay, doubling per failure from the same source; the failure is
        logged with its count."""
        self.owner()
        visitor_client = self.logged_in(user="alice")
        peer = self.visit(visitor_client.run_id, sk="guess1")
        self.assertEqual(peer.transport.value(), b"")
        self.assertEqual(
            self.answer(peer, 0.5), "visitor connection of [ssh] auth failed"
        )
        self.assertTrue(peer.transport.disconnecting)
        peer = self.visit(visitor_client.run_id, sk="guess2")
        self.reactor.advance(0.9)
        self.assertEqual(peer.transport.value(), b"")
        self.assertEqual(
            self.answer(peer, 0.1), "visitor connection of [ssh] auth failed"
        )
        self.assertEqual(
            len(self.log.lines("auth failed (wrong sk); failure 2 in a row")), 1
        )
        # even the right key now waits its turn (the source is in backoff)
        peer = self.visit(visitor_client.run_id)
        self.assertEqual(peer.transport.value(), b"")
        self.assertEqual(self.answer(peer, 8), "")

    def test_unknown_proxy_counts_as_failure(self):
        visitor_client = self.logged_in(user="alice")
        peer = self.visit(visitor_client.run_id, name="ghost")
        self.assertEqual(
            self.answer(peer, 0.5), "custom listener for [ghost] doesn't exist"
        )
        self.assertEqual(self.server.throttle.failures_from("visitor", "192.0.2.9"), 1)

    def test_tcp_proxy_is_not_a_listener(self):
        """A NewVisitorConn naming a tcp proxy finds no secret listener."""
        owner = self.logged_in(user="alice")
        self.assertEqual(self.new_proxy(owner, "web", 0).error, "")
        peer = self.visit(owner.run_id, name="web")
        self.assertEqual(
            self.answer(peer, 0.5), "custom listener for [web] doesn't exist"
        )

    def test_allow_users(self):
        """Another user is refused unless allow_users names it or is *."""
        self.owner(name="own")
        self.owner(name="listed", allow_users=["bob"])
        self.owner(name="all", allow_users=["*"])
        bob = self.logged_in(user="bob")
        self.assertEqual(
            self.answer(self.visit(bob.run_id, name="own")),
            "visitor connection of [own] user [bob] not allowed",
        )
        self.assertEqual(self.answer(self.visit(bob.run_id, name="listed")), "")
        self.assertEqual(self.answer(self.visit(bob.run_id, name="all")), "")

    def test_summary_without_detailed_errors(self):
        self.reload("detailed_errors_to_client = false\n")
        self.owner()
        alice = self.logged_in(user="alice")
        self.assertEqual(self.answer(self.visit(alice.run_id, sk="x"), 0.5), SUMMARY)

    def test_timestamp_skew(self):
        """With auth_timestamp_skew a stale signature is refused, and the
        server's log says why."""
        self.reload("auth_timestamp_skew = 60\n")
        self.owner()
        alice = self.logged_in(user="alice")
        peer = self.visit(alice.run_id, timestamp=NOW - 600)
        self.assertEqual(self.answer(peer), "visitor connection of [ssh] auth failed")
        self.assertEqual(len(self.log.lines("behind the server's clock")), 1)
        self.assertEqual(self.answer(self.visit(alice.run_id, timestamp=NOW - 30)), "")

    def test_visitors_per_source_bounded(self):
        self.patch(stcp_proxy, "MAX_VISITORS_PER_SOURCE", 2)
        self.owner()
        alice = self.logged_in(user="alice")
        for _ in range(2):
            self.assertEqual(self.answer(self.visit(alice.run_id)), "")
        self.assertEqual(
            self.answer(self.visit(alice.run_id)),
            "proxy [ssh] carries 2 visitor connections from 192.0.2.9",
        )
        # another source still gets in
        self.assertEqual(self.answer(self.visit(alice.run_id, host="192.0.2.10")), "")

    def test_visitors_in_total_bounded(self):
        self.patch(stcp_proxy, "MAX_VISITORS", 2)
        self.owner()
        alice = self.logged_in(user="alice")
        for host in ("192.0.2.20", "192.0.2.21"):
            self.assertEqual(self.answer(self.visit(alice.run_id, host=host)), "")
        self.assertEqual(
            self.answer(self.visit(alice.run_id, host="192.0.2.22")),
            "proxy [ssh] carries its 2 visitor connections",
        )

    def test_visitor_end_frees_its_place(self):
        self.patch(stcp_proxy, "MAX_VISITORS_PER_SOURCE", 1)
        self.owner()
        alice = self.logged_in(user="alice")
        first = self.visit(alice.run_id)
        self.assertEqual(self.answer(first), "")
        first.lose()
        self.assertEqual(self.answer(self.visit(alice.run_id)), "")

    def test_garbage_after_request_not_read_before_answer(self):
        """Bytes pipelined behind a NewVisitorConn with a wrong key are
        never read: the connection is answered and closed."""
        self.owner()
        alice = self.logged_in(user="alice")
        peer = self.visit(alice.run_id, sk="bad")
        peer.protocol.dataReceived(b"\xff" * 100000)
        [connection] = [
            c
            for c in self.server.context.connections
            if getattr(c, "first_message", None) is messages.NewVisitorConn
        ]
        self.assertEqual(connection._parser.buffered, 0)
        self.assertEqual(
            self.answer(peer, 0.5), "visitor connection of [ssh] auth failed"
        )


class ConfigTests(SynchronousTestCase):
    def test_stcp_proxy_ini(self):
        c = parse_client_config(
            "[common]\nuser = alice\n[ssh]\ntype = stcp\nsk = k\n"
            "allow_users = bob, carol\nlocal_port = 22\nremote_port = 6000\n"
        )
        (p,) = c.proxies
        self.assertEqual(
            (p.name, p.type, p.sk, p.allow_users, p.local_port),
            ("alice.ssh", "stcp", "k", ("bob", "carol"), 22),
        )
        self.assertEqual(
            c.warnings,
            ("frpc.ini [ssh] remote_port: not used by stcp proxies; ignored",),
        )

    def test_stcp_proxy_needs_sk(self):
        e = self.assertRaises(
            ConfigError,
            parse_client_config,
            "[common]\n[ssh]\ntype = stcp\nlocal_port = 22\n",
        )
        self.assertIn("frpc.ini: [ssh] sk: required", str(e))

    def test_visitor_ini(self):
        c = parse_client_config(
            "[common]\nuser = bob\n[v]\nrole = visitor\ntype = stcp\n"
            "server_name = ssh\nserver_user = alice\nsk = k\nbind_port = 6000\n"
            "use_encryption = true\nuse_compression = true\n"
        )
        (v,) = c.visitors
        self.assertEqual(c.proxies, ())
        self.assertEqual(
            (v.server_name, v.sk, v.bind_addr, v.bind_port, v.use_encryption),
            ("ssh", "k", "127.0.0.1", 6000, True),
        )
        self.assertEqual(v.target(c.user), "alice.ssh")
        self.assertEqual(
            v.__class__(name="w", server_name="ssh").target("bob"), "bob.ssh"
        )
        self.assertEqual(v.__class__(name="w", server_name="ssh").target(""), "ssh")

    def test_visitor_v1(self):
        c = parse_client_config(
            'user = "bob"\n[[visitors]]\nname = "v"\ntype = "stcp"\n'
            'serverName = "ssh"\nserverUser = "alice"\nsecretKey = "k"\n'
            'bindAddr = "127.0.0.2"\nbindPort = 6000\n'
            "transport.useEncryption = true\ntransport.useCompression = true\n",
            source="frpc.toml",
        )
        (v,) = c.visitors
        self.assertEqual(
            (
                v.name,
                v.server_name,
                v.server_user,
                v.sk,
                v.bind_addr,
                v.bind_port,
                v.use_encryption,
                v.use_compression,
            ),
            ("v", "ssh", "alice", "k", "127.0.0.2", 6000, True, True),
        )
        self.assertEqual(c.warnings, ())

    def test_v1_stcp_proxy(self):
        c = parse_client_config(
            '[[proxies]]\nname = "ssh"\ntype = "stcp"\nsecretKey = "k"\n'
            'allowUsers = ["*"]\nlocalPort = 22\n',
            source="frpc.toml",
        )
        (p,) = c.proxies
        self.assertEqual((p.type, p.sk, p.allow_users), ("stcp", "k", ("*",)))

    def test_visitor_errors(self):
        for body, key in (
            ("sk = k\nbind_port = 1\n", "server_name"),
            ("server_name = s\nbind_port = 1\n", "sk"),
            ("server_name = s\nsk = k\nbind_port = 70000\n", "bind_port"),
        ):
            e = self.assertRaises(
                ConfigError,
                parse_client_config,
                "[common]\n[v]\nrole = visitor\ntype = stcp\n" + body,
            )
            self.assertIn(f"frpc.ini: [v] {key}: ", str(e))

    def test_visitor_without_port_skipped(self):
        c = parse_client_config(
            "[common]\n[v]\nrole = visitor\ntype = stcp\nserver_name = s\n"
            "sk = k\nbind_port = -1\nbogus = 1\n"
        )
        self.assertEqual(c.visitors, ())
        self.assertEqual(
            c.warnings,
            (
                "frpc.ini [v] bogus: not used by stcp visitors; ignored",
                "frpc.ini [v] bind_port: no local port to listen on; section skipped",
            ),
        )

    def test_other_visitor_types_warn(self):
        for vtype in ("sudp", "xtcp"):
            c = parse_client_config(
                f"[common]\n[v]\nrole = visitor\ntype = {vtype}\nserver_name = s\n"
            )
            self.assertEqual(c.visitors, ())
            self.assertEqual(
                c.warnings,
                (
                    f"frpc.ini [v]: visitor type {vtype} is not supported by "
                    "labrelay yet; section skipped",
                ),
            )
