# -*- test-case-name: tests.unit.test_reload -*-
"""
Live reload of the client's proxies (labrelay.client.reload) in memory: the
diff of old and new proxy sections and how it is applied to a RelayClient
(tests.integration.test_reload reloads against a real relay).
"""

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from labrelay.client.reload import (
    ProxyDiff,
    apply,
    common_changes,
    diff_proxies,
    reload_from_file,
)
from labrelay.client.service import ProxyState, RelayClient
from labrelay.config import (
    ConfigError,
    ProxyConfig,
    load_client_config,
    parse_client_config,
)
from labrelay.protocol import messages

from ..support.config_files import client_text, proxies, rewrite, write
from ..support.harness import LogCapture


class FakeClient:
    """The reload surface of a RelayClient, recording calls."""

    def __init__(self, config):
        self.config = config
        self.proxies = {p.name: ProxyState(p) for p in config.proxies}
        self.calls = []

    def add_proxy(self, proxy):
        self.calls.append(("add", proxy.name))
        self.proxies[proxy.name] = ProxyState(proxy)

    def remove_proxy(self, name):
        self.calls.append(("remove", name))
        del self.proxies[name]


class DiffTests(SynchronousTestCase):
    """diff_proxies and common_changes, pure functions."""

    def test_classifies_by_name_and_value(self):
        """Missing names are removed, new ones added, equal ones unchanged
        and any differing one changed."""
        old = {
            "a": ProxyConfig("a", local_port=1),
            "b": ProxyConfig("b", local_port=2),
            "c": ProxyConfig("c", local_port=3),
        }
        new = [
            ProxyConfig("d", local_port=4),
            ProxyConfig("a", local_port=1),
            ProxyConfig("c", local_port=3, use_compression=True),
        ]
        self.assertEqual(
            diff_proxies(old, new),
            ProxyDiff(added=("d",), removed=("b",), changed=("c",), unchanged=("a",)),
        )

    def test_every_field_counts(self):
        """A change in metas alone, or in http headers alone, is a
        change."""
        for field, value in (
            ("metas", (("k", "v"),)),
            ("headers", (("X-A", "1"),)),
            ("local_ip", "10.0.0.1"),
            ("remote_port", 9),
        ):
            old = ProxyConfig("a", local_port=1)
            new = attrs.evolve(old, **{field: value})
            self.assertEqual(diff_proxies({"a": old}, [new]).changed, ("a",), field)

    def test_common_changes_named(self):
        """Differing [common] keys are named; start, includes and the
        proxies are not [common] changes."""
        old = parse_client_config(client_text(proxies=proxies(("a", 1))))
        new = parse_client_config(
            client_text(
                server_port=7001,
                proxies=proxies(("a", 1), ("b", 2)),
                extra="token = other\nstart = a\nmeta_x = 1\n",
            )
        )
        self.assertEqual(common_changes(old, new), ("server_port", "token", "meta_*"))
        self.assertEqual(common_changes(old, old), ())


class ApplyTests(SynchronousTestCase):
    """apply() and reload_from_file() on a fake client."""

    def test_removed_changed_added(self):
        """Removed and changed proxies are closed first, then changed and
        new ones are started; unchanged states are the same objects."""
        old = parse_client_config(
            client_text(proxies=proxies(("keep", 1), ("gone", 2), ("change", 3)))
        )
        client = FakeClient(old)
        kept = client.proxies["keep"]
        new = parse_client_config(
            client_text(proxies=proxies(("keep", 1), ("change", 4), ("new", 5)))
        )
        result = apply(client, new)
        self.assertEqual(
            client.calls,
            [
                ("remove", "gone"),
                ("remove", "change"),
                ("add", "change"),
                ("add", "new"),
            ],
        )
        self.assertIs(client.proxies["keep"], kept)
        self.assertEqual(client.proxies["change"].config.local_port, 4)
        self.assertEqual(result.diff.unchanged, ("keep",))
        self.assertEqual(client.config.proxies, new.proxies)

    def test_common_change_needs_restart(self):
        """A [common] change is logged as needing a restart, naming the
        key, and the running [common] values are kept."""
        log = LogCapture(self)
        old = parse_client_config(client_text(proxies=proxies(("a", 1))))
        client = FakeClient(old)
        new = parse_client_config(
            client_text(proxies=proxies(("a", 1)), extra="pool_count = 5\n")
        )
        result = apply(client, new)
        self.assertEqual(result.restart_keys, ("pool_count",))
        self.assertEqual(client.config.pool_count, 1)
        self.assertEqual(client.calls, [])
        self.assertEqual(len(log.lines("pool_count", "needs a restart")), 1)

    def test_start_list_applied(self):
        """A new start list decides which proxies run after the reload."""
        old = parse_client_config(client_text(proxies=proxies(("a", 1), ("b", 2))))
        client = FakeClient(old)
        new = parse_client_config(
            client_text(proxies=proxies(("a", 1), ("b", 2)), extra="start = b\n")
        )
        self.assertEqual(apply(client, new).restart_keys, ())
        self.assertEqual(client.calls, [("remove", "a")])

    def test_bad_file_changes_nothing(self):
        """A file that does not parse raises ConfigError and no proxy is
        touched."""
        path = write(self, client_text(proxies=proxies(("a", 1))))
        client = FakeClient(load_client_config(path))
        before = client.config
        rewrite(path, client_text(proxies="[a]\nlocal_port = x\n[b]\nlocal_port = 2\n"))
        error = self.assertRaises(ConfigError, reload_from_file, client, path)
        self.assertIn("local_port", str(error))
        self.assertEqual((client.calls, client.config), ([], before))

    def test_template_and_includes_reread(self):
        """Reload renders the template again and re-reads included
        files."""
        path = write(
            self,
            client_text(
                proxies="[a]\nlocal_port = {{ .Envs.PORT }}\n",
                extra="includes = conf.d/*.ini\n",
            ),
        )
        conf_d = FilePath(path).sibling("conf.d")
        conf_d.makedirs()
        client = FakeClient(load_client_config(path, environ={"PORT": "1"}))
        conf_d.child("b.ini").setContent(b"[b]\nlocal_port = 2\n")
        result = reload_from_file(client, path, environ={"PORT": "3"})
        self.assertEqual((result.diff.changed, result.diff.added), (("a",), ("b",)))
        self.assertEqual(client.proxies["a"].config.local_port, 3)


class FakeControl:
    """A logged-in control connection that records what is sent."""

    login_ok = True

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


class RelayClientReloadTests(SynchronousTestCase):
    """RelayClient.add_proxy/remove_proxy/reload, without a network."""

    def client(self, text=None, config_path=None):
        self.clock = MemoryReactorClock()
        config = parse_client_config(text or client_text(proxies=proxies(("a", 1))))
        client = RelayClient(
            config, self.clock, object(), exit_on_fatal=False, config_path=config_path
        )
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        return client

    def test_add_when_logged_in(self):
        """A proxy added while logged in is registered at once."""
        client = self.client()
        client.control = FakeControl()
        client.add_proxy(ProxyConfig("b", local_port=2, remote_port=7))
        [message] = client.control.sent
        self.assertEqual(
            (type(message), message.proxy_name, message.remote_port),
            (messages.NewProxy, "b", 7),
        )
        self.assertEqual(client.proxies["b"].status, "wait start")

    def test_add_when_offline(self):
        """A proxy added without a logged-in control waits for the next
        login (status new), sending nothing."""
        client = self.client()
        control = client.control = FakeControl()
        control.login_ok = False
        client.add_proxy(ProxyConfig("b", local_port=2))
        self.assertEqual((control.sent, client.proxies["b"].status), ([], "new"))

    def test_remove_closes_and_cancels_retry(self):
        """Removing a refused proxy sends CloseProxy, cancels its retry
        timer and reports it closed to waiters."""
        client = self.client()
        client.control = FakeControl()
        client.proxy_response(
            messages.NewProxyResp(proxy_name="a", error="port already used")
        )
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        closed = client.when_proxy_status("a", "closed")
        client.remove_proxy("a")
        self.assertEqual(client.control.sent, [messages.CloseProxy(proxy_name="a")])
        self.assertNotIn("a", client.proxies)
        self.assertEqual(self.successResultOf(closed).status, "closed")

    def test_reload_without_file(self):
        """A client without a config file refuses to reload, clearly."""
        error = self.assertRaises(ConfigError, self.client().reload)
        self.assertIn("no config file", str(error))

    def test_reload_sends_messages(self):
        """reload() re-reads the file: CloseProxy for a removed proxy,
        CloseProxy then NewProxy for a changed one, NewProxy for a new
        one, nothing for an unchanged one."""
        path = write(
            self, client_text(proxies=proxies(("keep", 1), ("gone", 2), ("change", 3)))
        )
        client = self.client(open(path).read(), config_path=path)
        client.control = FakeControl()
        rewrite(
            path, client_text(proxies=proxies(("keep", 1), ("change", 4), ("new", 5)))
        )
        client.reload()
        self.assertEqual(
            [(type(m).__name__, m.proxy_name) for m in client.control.sent],
            [
                ("CloseProxy", "gone"),
                ("CloseProxy", "change"),
                ("NewProxy", "change"),
                ("NewProxy", "new"),
            ],
        )
