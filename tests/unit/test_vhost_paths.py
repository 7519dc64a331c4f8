# -*- test-case-name: tests.unit.test_vhost_paths -*-
"""
How the vhost normalises a request's target before routing it: the pure
rules of :func:`labrelay.server.vhost.request.route_target`.
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.vhost.request import BadRequest, route_target


class RouteTargetTests(SynchronousTestCase):
    """The pure target rules, without sockets."""

    def test_table(self):
        for target, (forward, path, lenient) in {
            b"/": (b"/", "/", "/"),
            b"/a/b/..": (b"/a/", "/a/", "/a/"),
            b"/a/./b/.": (b"/a/b/", "/a/b/", "/a/b/"),
            b"/../../a": (b"/a", "/a", "/a"),
            b"/a%2fb": (b"/a%2Fb", "/a%2Fb", "/a/b"),
            b"/caf%c3%a9?x=%2e": (b"/caf%C3%A9?x=%2e", "/caf\u00e9", "/caf\u00e9"),
            b"/a;p=1/b": (b"/a;p=1/b", "/a;p=1/b", "/a/b"),
            b"/a?": (b"/a?", "/a", "/a"),
        }.items():
            self.assertEqual(
                route_target(b"GET", target), (forward, path, lenient), target
            )

    def test_special_targets(self):
        """``*`` for OPTIONS and CONNECT's authority pass untouched;
        anything else that is not a path is refused."""
        self.assertEqual(route_target(b"OPTIONS", b"*")[0], b"*")
        self.assertEqual(route_target(b"CONNECT", b"h:443")[0], b"h:443")
        for method, target in (
            (b"GET", b"*"),
            (b"GET", b"a/b"),
            (b"GET", b"/a#b"),
            (b"GET", b"/%"),
            (b"GET", b"/%g0"),
        ):
            with self.assertRaises(BadRequest):
                route_target(method, target)
