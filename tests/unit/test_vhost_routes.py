# -*- test-case-name: tests.unit.test_vhost_routes -*-
"""
The HTTP vhost route table: registration, conflicts, and lookup by host,
path and basic-auth user.
"""

import time

from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.errors import ProxyError
from labrelay.protocol import messages
from labrelay.protocol.framing import MAX_BODY_LENGTH, encode_message
from labrelay.server.vhost.proxy import HttpProxy
from labrelay.server.vhost.routes import (
    CONFLICT,
    MAX_DOMAIN_LENGTH,
    MAX_LOCATION_LENGTH,
    RouteConflict,
    RouteTable,
    candidate_domains,
    normalize_domain,
    request_host,
)

from ..support.fakes import NoScan


class HostNameTests(SynchronousTestCase):
    def test_request_host_strips_port_case_and_dot(self):
        """A Host value loses its port, its case and one trailing dot."""
        self.assertEqual(
            request_host("Jupyter.Web.Example.TEST.:8080"), "jupyter.web.example.test"
        )
        self.assertEqual(request_host("example.com"), "example.com")
        self.assertEqual(request_host("example.com.."), "example.com.")

    def test_request_host_ipv6(self):
        """Bracketed IPv6 hosts lose brackets and port; bare ones stay whole."""
        self.assertEqual(request_host("[::1]:8080"), "::1")
        self.assertEqual(request_host("[::1]"), "::1")
        self.assertEqual(request_host("::1"), "::1")

    def test_normalize_domain(self):
        """Registered domains are lower-cased and lose one trailing dot."""
        self.assertEqual(normalize_domain("Web.Example.COM."), "web.example.com")
        self.assertEqual(normalize_domain("*"), "*")

    def test_candidates_never_wildcard_a_tld(self):
        """Wildcard candidates stop at three labels and end with '*'."""
        self.assertEqual(
            list(candidate_domains("a.b.example.com")),
            ["a.b.example.com", "*.b.example.com", "*.example.com", "*"],
        )
        self.assertEqual(list(candidate_domains("example.com")), ["example.com", "*"])


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
        self.assertEqual(self.table.lookup("jupyter.web.example.test", "/"), "dot")
        self.assertEqual(self.table.lookup("jupyter.web.example.test.:99", "/"), "dot")

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
            self.table.add(
                [("a.example.com", "", ""), ("b.example.com", "", "")], "second"
            )
        self.assertIsNone(self.table.lookup("a.example.com", "/"))
        self.assertEqual(len(self.table), 1)

    def test_repeated_key_in_one_registration(self):
        """A proxy naming the same key twice is refused."""
        with self.assertRaises(RouteConflict):
            self.table.add(
                [("a.example.com", "", ""), ("A.example.com", "", "")], "dup"
            )
        self.assertEqual(len(self.table), 0)

    def test_remove(self):
        """Removing a target frees its keys at once and keeps the others."""
        self.table.add([("a.example.com", "", ""), ("a.example.com", "/x", "")], "gone")
        self.add("kept", "b.example.com")
        self.assertEqual(self.table.remove("gone"), 2)
        self.assertIsNone(self.table.lookup("a.example.com", "/x"))
        self.assertEqual(self.table.lookup("b.example.com", "/"), "kept")
        self.add("again", "a.example.com")
        self.assertEqual(self.table.lookup("a.example.com", "/"), "again")


class Probes(dict):
    """A location dict counting its lookups."""

    probes = 0

    def get(self, key, default=None):
        Probes.probes += 1
        return super().get(key, default)


def many_keys(domains: int, locations: int, prefix="d"):
    """domains x locations distinct keys."""
    return [
        (f"{prefix}{i}.example.com", f"/l{j}", "")
        for i in range(domains)
        for j in range(locations)
    ]


class RouteTableCostTests(SynchronousTestCase):
    """Registration and removal cost O(the proxy's own keys); a lookup's
    cost does not grow with the number of routes."""

    def test_remove_touches_only_own_keys(self):
        """Removing one target never iterates the domains or users of the
        table, however many other routes there are."""
        table = RouteTable()
        for n in range(200):
            table.add(many_keys(5, 2, prefix=f"o{n}-"), f"other{n}")
        table.add(
            [("shared.example.com", "/a", ""), ("o7-1.example.com", "/mine", "")],
            "mine",
        )
        table.add([("shared.example.com", "/b", "")], "neighbour")
        table._domains = NoScan(table._domains)
        for domain, users in list(dict.items(table._domains)):
            dict.__setitem__(table._domains, domain, NoScan(users))
        self.assertEqual(table.remove("mine"), 2)
        table.add([("new.example.com", "", "")], "late")
        self.assertEqual(len(table), 200 * 10 + 2)
        self.assertEqual(table.lookup("shared.example.com", "/b"), "neighbour")
        self.assertIsNone(table.lookup("shared.example.com", "/a"))
        self.assertEqual(table.lookup("o7-1.example.com", "/l1"), "other7")
        self.assertIsNone(table.lookup("o7-1.example.com", "/mine"))

    def test_big_registration_is_linear(self):
        """300 domains x 300 locations (90,000 keys, what froze the reactor
        for a minute) register and unregister in well under a second per
        phase on this machine (a quadratic table takes minutes)."""
        table = RouteTable()
        keys = many_keys(300, 300)
        started = time.monotonic()
        table.add(keys, "big")
        added = time.monotonic() - started
        self.assertEqual(table.lookup("d299.example.com", "/l299/x"), "big")
        started = time.monotonic()
        self.assertEqual(table.remove("big"), 90000)
        removed = time.monotonic() - started
        self.assertEqual((len(table), table._domains), (0, {}))
        self.assertLess(added, 3.0)
        self.assertLess(removed, 3.0)

    def test_lookup_probes_lengths_not_locations(self):
        """With 5,000 locations of one length on a domain, a lookup makes
        one dict probe per distinct registered length (at most the path's
        length), not one per location."""
        table = RouteTable()
        table.add(
            [("h.example.com", f"/{n:05d}", "") for n in range(5000)]
            + [("h.example.com", "", "")],
            "t",
        )
        locations = table._domains["h.example.com"][""]
        locations.targets = Probes(locations.targets)
        Probes.probes = 0
        self.assertEqual(table.lookup("h.example.com", "/04999/x"), "t")
        self.assertEqual(table.lookup("h.example.com", "/x"), "t")
        self.assertLessEqual(Probes.probes, 3)

    def test_longest_of_many_lengths(self):
        """Locations of every length 1..40 on one domain: the longest
        prefix of the path wins, as with the reverse-sorted scan."""
        table = RouteTable()
        path = "/" + "abcdefghij" * 4
        for n in range(1, 41):
            table.add([("h.example.com", path[:n], "")], n)
        self.assertEqual(table.lookup("h.example.com", path[:25] + "zz"), 25)
        self.assertEqual(table.lookup("h.example.com", path + "/more"), 40)
        self.assertEqual(table.lookup("h.example.com", "/b"), 1)
        self.assertEqual(table.remove(40), 1)
        self.assertEqual(table.lookup("h.example.com", path), 39)

    def test_too_long_strings_are_refused(self):
        """A domain over 253 characters or a location over the maximum is
        refused, and registers nothing."""
        table = RouteTable()
        long_domain = "a" * (MAX_DOMAIN_LENGTH - 4) + ".com.x"
        with self.assertRaises(ProxyError):
            table.add([("ok.example.com", "", ""), (long_domain, "", "")], "t")
        with self.assertRaises(ProxyError):
            table.add([("ok.example.com", "/" * (MAX_LOCATION_LENGTH + 1), "")], "t")
        self.assertEqual(len(table), 0)
        table.add([("a" * MAX_DOMAIN_LENGTH + ".", "/" * MAX_LOCATION_LENGTH, "")], "t")
        self.assertEqual(len(table), 1)


class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class RouteLimitTests(SynchronousTestCase):
    """The per-proxy and per-server route caps of an http proxy."""

    def proxy(self, extra="", routes=None, **fields):
        config = parse_server_config(f"[common]\nvhost_http_port = 80\n{extra}")
        vhost = _Stub(routes=routes if routes is not None else RouteTable(), port=80)
        message = messages.NewProxy(proxy_name="p", proxy_type="http", **fields)
        return HttpProxy(_Stub(config=config), None, message, vhost)

    def assert_refused(self, text, **kw):
        proxy = self.proxy(**kw)
        with self.assertRaises(ProxyError) as caught:
            proxy.start()
        self.assertIn(text, str(caught.exception))
        self.assertEqual(len(proxy.vhost.routes), 0)

    def test_defaults(self):
        """The defaults: 100 domains, 100 locations, 1,000 routes per
        proxy, 100,000 routes in all."""
        config = parse_server_config("[common]\n")
        self.assertEqual(
            (
                config.max_domains_per_proxy,
                config.max_locations_per_proxy,
                config.max_routes_per_proxy,
                config.max_routes_total,
            ),
            (100, 100, 1000, 100000),
        )

    def test_caps(self):
        """Too many domains, locations or their product are refused with a
        message naming the key; at the cap they register."""
        domains = [f"d{i}.example.com" for i in range(101)]
        locations = [f"/l{i}" for i in range(101)]
        self.assert_refused("max_domains_per_proxy (100)", custom_domains=domains)
        self.assert_refused(
            "max_locations_per_proxy (100)",
            custom_domains=["a.example.com"],
            locations=locations,
        )
        self.assert_refused(
            "1024 routes exceed the max_routes_per_proxy (1000)",
            custom_domains=domains[:32],
            locations=locations[:32],
        )
        proxy = self.proxy(custom_domains=domains[:10], locations=locations[:100])
        proxy.start()
        self.assertEqual(len(proxy.vhost.routes), 1000)
        proxy.close()
        self.assertEqual(len(proxy.vhost.routes), 0)

    def test_total_cap(self):
        """max_routes_total counts every proxy's routes."""
        routes = RouteTable()
        first = self.proxy(
            "max_routes_total = 5\n",
            routes,
            custom_domains=["a.example.com"],
            locations=["/1", "/2", "/3"],
        )
        first.start()
        second = self.proxy(
            "max_routes_total = 5\n",
            routes,
            custom_domains=["b.example.com"],
            locations=["/1", "/2", "/3"],
        )
        with self.assertRaises(ProxyError) as caught:
            second.start()
        self.assertIn("max_routes_total (5)", str(caught.exception))
        self.assertEqual(len(routes), 3)

    def test_zero_turns_a_cap_off(self):
        """0 turns the caps off (the table still copes: O(keys))."""
        proxy = self.proxy(
            "max_domains_per_proxy = 0\n"
            "max_locations_per_proxy = 0\n"
            "max_routes_per_proxy = 0\n",
            custom_domains=[f"d{i}.x" for i in range(150)],
            locations=[f"/{i}" for i in range(150)],
        )
        proxy.start()
        self.assertEqual(len(proxy.vhost.routes), 22500)

    def test_worst_message_is_refused_cheaply(self):
        """The largest NewProxy frp allows, packed with the most domains x
        locations that fit in 10 KiB, is refused before any route is
        built, in milliseconds."""
        domains = [f"{i}.x" for i in range(680)]
        locations = [f"/{i}" for i in range(680)]
        message = messages.NewProxy(
            proxy_name="p",
            proxy_type="http",
            custom_domains=domains,
            locations=locations,
        )
        self.assertLessEqual(len(encode_message(message)) - 9, MAX_BODY_LENGTH)
        proxy = self.proxy(custom_domains=domains, locations=locations)
        started = time.monotonic()
        with self.assertRaises(ProxyError):
            proxy.start()
        self.assertLess(time.monotonic() - started, 0.05)
        self.assertEqual(len(proxy.vhost.routes), 0)
