# -*- test-case-name: tests.unit.test_localweb -*-
"""
The Host and Origin policy of the admin API and the dashboard
(labrelay.localweb), as pure functions; the real-socket tests are in
test_admin and test_dashboard.
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.localweb import HostPolicy, split_host


class SplitHostTests(SynchronousTestCase):
    """Parsing a Host header."""

    def test_forms(self):
        """Names, IPv4 and bracketed IPv6 literals, with or without a
        port; lower-cased, brackets and a trailing dot removed."""
        self.assertEqual(split_host("LocalHost:7400"), ("localhost", 7400))
        self.assertEqual(split_host("127.0.0.1"), ("127.0.0.1", None))
        self.assertEqual(split_host("[::1]:80"), ("::1", 80))
        self.assertEqual(split_host("[::1]"), ("::1", None))
        self.assertEqual(split_host("example.test.:8"), ("example.test", 8))

    def test_malformed(self):
        """Anything else is None: an unbracketed IPv6 literal, a bad port,
        user info, a path, spaces, junk after the brackets."""
        for value in (
            "",
            " ",
            "::1",
            "[::1",
            "[::1]x",
            "[nope]:1",
            "a:b",
            "a:0",
            "a:65536",
            "a:123456",
            "a:",
            ":80",
            "u@localhost",
            "localhost/x",
            "local host",
            "a\\b",
            ".",
            "a:1:2",
        ):
            self.assertIsNone(split_host(value), value)


class HostPolicyTests(SynchronousTestCase):
    """Which Host names a listener, and which request is cross-site."""

    def test_loopback_names_with_the_port(self):
        """localhost and the loopback literals name a listener on the port
        the request arrived on, and no other port."""
        policy = HostPolicy("127.0.0.1")
        for host in ("localhost:7400", "127.0.0.1:7400", "[::1]:7400"):
            self.assertTrue(policy.host_allowed(host, "127.0.0.1", 7400))
            self.assertFalse(
                policy.host_allowed(host.replace("7400", "7401"), "127.0.0.1", 7400)
            )
        self.assertFalse(policy.host_allowed("localhost", "127.0.0.1", 7400))
        self.assertTrue(policy.host_allowed("localhost", "127.0.0.1", 80))

    def test_listen_and_arrival_address(self):
        """The configured address and the address the connection arrived
        on are accepted; a wildcard listen address is not a name."""
        policy = HostPolicy("192.0.2.7")
        self.assertTrue(policy.host_allowed("192.0.2.7:1", "127.0.0.1", 1))
        policy = HostPolicy("0.0.0.0")
        self.assertFalse(policy.host_allowed("0.0.0.0:1", "127.0.0.1", 1))
        self.assertTrue(policy.host_allowed("198.51.100.4:1", "198.51.100.4", 1))
        self.assertFalse(policy.host_allowed("198.51.100.5:1", "198.51.100.4", 1))

    def test_rebinding_names_refused(self):
        """A stranger's name, even one that looks local, is refused, as is
        no Host at all."""
        policy = HostPolicy("127.0.0.1")
        for host in (
            "evil.example:7400",
            "localhost.evil.example:7400",
            "127.0.0.1.nip.io:7400",
            "[::2]:7400",
            None,
        ):
            self.assertFalse(policy.host_allowed(host, "127.0.0.1", 7400), host)

    def test_extra_names_any_port(self):
        """Listed names are accepted with any port, or none."""
        policy = HostPolicy("127.0.0.1", ["Frps.Example."])
        for host in ("frps.example", "frps.example:443", "FRPS.example:1"):
            self.assertTrue(policy.host_allowed(host, "127.0.0.1", 7500))

    def test_cross_site(self):
        """Another origin, a null origin or a cross/same-site fetch is
        cross-site; the listener's own origin, a typed URL, and tools that
        send neither header are not."""
        policy = HostPolicy("127.0.0.1")
        host = "127.0.0.1:7400"
        for origin, site in (
            ("http://evil.example", None),
            ("null", None),
            ("https://127.0.0.1:7400", None),
            ("http://127.0.0.1:7401", None),
            (None, "cross-site"),
            (None, "same-site"),
            ("http://127.0.0.1:7400", "cross-site"),
        ):
            self.assertTrue(policy.cross_site(origin, site, host), (origin, site))
        self.assertFalse(
            policy.cross_site("https://127.0.0.1:7400", None, host, ("http", "https"))
        )
        self.assertTrue(
            policy.cross_site("ftp://127.0.0.1:7400", None, host, ("http", "https"))
        )
        for origin, site in (
            (None, None),
            ("http://127.0.0.1:7400", None),
            ("HTTP://127.0.0.1:7400", "same-origin"),
            (None, "none"),
        ):
            self.assertFalse(policy.cross_site(origin, site, host), (origin, site))
