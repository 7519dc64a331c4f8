# -*- test-case-name: tests.test_vhost_routes -*-
"""
The HTTP vhost route table: registration, conflicts, and lookup by host,
path and basic-auth user.
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.vhost_routes import (
    CONFLICT, RouteConflict, RouteTable, candidate_domains, normalize_domain,
    request_host)


class HostNameTests(SynchronousTestCase):

    def test_request_host_strips_port_case_and_dot(self):
        """A Host value loses its port, its case and one trailing dot."""
        self.assertEqual(request_host("Jupyter.Web.Example.TEST.:8080"),
                         "jupyter.web.example.test")
        self.assertEqual(request_host("example.com"), "example.com")
        self.assertEqual(request_host("example.com.."), "example.com.")

    def test_request_host_ipv6(self):
        """Bracketed IPv6 hosts lose brackets and port; bare ones stay whole."""
        self.assertEqual(request_host("[::1]:8080"), "::1")
        self.assertEqual(request_host("[::1]"), "::1")
        self.assertEqual(request_host("::1"), "::1")

    def test_normalize_domain(self):
        """Registered domains are lower-cased and lose one trailing dot."""
        self.assertEqual(normalize_domain("Web.Example.COM."),
                         "web.example.com")
        self.assertEqual(normalize_domain("*"), "*")

    def test_candidates_never_wildcard_a_tld(self):
        """Wildcard candidates stop at three labels and end with '*'."""
        self.assertEqual(list(candidate_domains("a.b.example.com")),
                         ["a.b.example.com", "*.b.example.com",
                          "*.example.com", "*"])
        self.assertEqual(list(candidate_domains("example.com")),
                         ["example.com", "*"])


class RouteTableTests(SynchronousTestCase):

    def setUp(self):
        self.table = RouteTable()

    def add(self, target, domain, location="", user=""):
        self.table.add([(domain, location, user)], target)

    def test_exact_host(self):
        """An exact domain route serves its host, whatever the case and port."""
        self.add("web", "web.example.com")
        self.assertEqual(self.table.lookup("WEB.example.com:80", "/x"), "web")
        self.assertIsNone(self.table.lookup("other.example.com", "/x"))

    def test_trailing_dot_registration(self):
        """A domain registered with a trailing dot matches hosts without it."""
        self.add("dot", "jupyter.web.example.test.")
        self.assertEqual(self.table.lookup("jupyter.web.example.test", "/"),
                         "dot")
        self.assertEqual(self.table.lookup("jupyter.web.example.test.:99",
                                           "/"), "dot")

    def test_wildcard_order(self):
        """The most specific wildcard wins; exact beats wildcard; '*' is last."""
        self.add("star", "*")
        self.add("wide", "*.example.com")
        self.add("narrow", "*.b.example.com")
        self.add("exact", "a.b.example.com")
        lookup = self.table.lookup
        self.assertEqual(lookup("a.b.example.com", "/"), "exact")
        self.assertEqual(lookup("c.b.example.com", "/"), "narrow")
        self.assertEqual(lookup("c.d.example.com", "/"), "wide")
        self.assertEqual(lookup("x.example.com", "/"), "wide")
        self.assertEqual(lookup("example.org", "/"), "star")

    def test_no_tld_wildcard(self):
        """'*.com' is never tried for a host."""
        self.add("com", "*.com")
        self.assertIsNone(self.table.lookup("example.com", "/"))
        self.assertIsNone(self.table.lookup("a.example.com", "/"))

    def test_longest_location_wins(self):
        """Within a domain the longest matching location prefix wins."""
        self.add("root", "h.example.com", "")
        self.add("api", "h.example.com", "/api")
        self.add("v2", "h.example.com", "/api/v2")
        lookup = self.table.lookup
        self.assertEqual(lookup("h.example.com", "/api/v2/x"), "v2")
        self.assertEqual(lookup("h.example.com", "/api/v1"), "api")
        self.assertEqual(lookup("h.example.com", "/apix"), "api")
        self.assertEqual(lookup("h.example.com", "/other"), "root")

    def test_location_without_root(self):
        """A path that matches no location finds nothing on that domain."""
        self.add("api", "h.example.com", "/api")
        self.assertIsNone(self.table.lookup("h.example.com", "/web"))

    def test_route_by_http_user(self):
        """A user's routes come before user-less ones; others fall through."""
        self.add("alice", "h.example.com", "", "alice")
        self.add("anyone", "h.example.com", "", "")
        lookup = self.table.lookup
        self.assertEqual(lookup("h.example.com", "/", "alice"), "alice")
        self.assertEqual(lookup("h.example.com", "/", "bob"), "anyone")
        self.assertEqual(lookup("h.example.com", "/", ""), "anyone")

    def test_user_route_only(self):
        """A route_by_http_user route serves no other user."""
        self.add("alice", "h.example.com", "", "alice")
        self.assertIsNone(self.table.lookup("h.example.com", "/", "bob"))
        self.assertIsNone(self.table.lookup("h.example.com", "/"))

    def test_conflict(self):
        """An identical key is a conflict with frp's error text."""
        self.add("first", "h.example.com", "/a")
        with self.assertRaises(RouteConflict) as caught:
            self.add("second", "H.example.com.", "/a")
        self.assertEqual(str(caught.exception), CONFLICT)
        self.assertEqual(CONFLICT, "router config conflict")

    def test_different_user_or_location_is_no_conflict(self):
        """Keys differing in location or user coexist."""
        self.add("a", "h.example.com", "/a")
        self.add("b", "h.example.com", "/b")
        self.add("c", "h.example.com", "/a", "carol")
        self.assertEqual(len(self.table), 3)

    def test_add_is_all_or_nothing(self):
        """A conflict on one key registers none of the proxy's keys."""
        self.add("first", "b.example.com")
        with self.assertRaises(RouteConflict):
            self.table.add([("a.example.com", "", ""),
                            ("b.example.com", "", "")], "second")
        self.assertIsNone(self.table.lookup("a.example.com", "/"))
        self.assertEqual(len(self.table), 1)

    def test_repeated_key_in_one_registration(self):
        """A proxy naming the same key twice is refused."""
        with self.assertRaises(RouteConflict):
            self.table.add([("a.example.com", "", ""),
                            ("A.example.com", "", "")], "dup")
        self.assertEqual(len(self.table), 0)

    def test_remove(self):
        """Removing a target frees its keys at once and keeps the others."""
        self.table.add([("a.example.com", "", ""),
                        ("a.example.com", "/x", "")], "gone")
        self.add("kept", "b.example.com")
        self.assertEqual(self.table.remove("gone"), 2)
        self.assertIsNone(self.table.lookup("a.example.com", "/x"))
        self.assertEqual(self.table.lookup("b.example.com", "/"), "kept")
        self.add("again", "a.example.com")
        self.assertEqual(self.table.lookup("a.example.com", "/"), "again")
