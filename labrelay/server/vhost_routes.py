# -*- test-case-name: tests.test_vhost_routes -*-
"""
The route table of the HTTP virtual hosts: which ``type = http`` proxy
serves a request, by Host, path and basic-auth user (frp's vhost router).

A route key is ``(domain, location, route_by_http_user)``.  Registering a
key that is already taken is a conflict (``router config conflict``); a
proxy registers all its keys or none.  Lookup, for a request host:

1. the exact host;
2. wildcards: the first label replaced by ``*``, then labels dropped from
   the left while three remain (``a.b.example.com`` -> ``*.b.example.com``
   -> ``*.example.com``; never ``*.com``);
3. the catch-all domain ``*``;

each tried first with the routes of the request's basic-auth user
(``route_by_http_user``), then with user-less routes.  Within one domain and
user the longest matching location wins: locations are tried in reverse
lexicographic order with a plain string prefix test (``/api`` matches
``/apix``; ``""`` matches every path).

Host names are compared case-insensitively, without a port and without one
trailing dot (``Example.COM.:8080`` is ``example.com``).
"""

from typing import Iterable, Iterator, Optional

from ..errors import ProxyError

#: The error text frp sends in NewProxyResp for a taken route key.
CONFLICT = "router config conflict"


class RouteConflict(ProxyError):
    """A route key is already registered (frp: ``router config conflict``)."""

    def __init__(self, domain="", location="", user=""):
        super().__init__(CONFLICT)
        self.key = (domain, location, user)


def normalize_domain(name: str) -> str:
    """A domain as routes store it: lower-cased, one trailing dot dropped."""
    name = name.strip().lower()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    return name


def request_host(host: str) -> str:
    """
    The routing name of a request ``Host`` value: the port removed, then
    :func:`normalize_domain` (``[::1]:80`` -> ``::1``; a value that is not
    ``host:port`` is kept whole, as Go's ``net.SplitHostPort`` fallback).
    """
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        if end != -1 and (end == len(host) - 1 or host[end + 1] == ":"):
            host = host[1:end]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return normalize_domain(host)


def candidate_domains(host: str) -> Iterator[str]:
    """The domains tried for *host*, in lookup order (see the module doc)."""
    yield host
    labels = host.split(".")
    while len(labels) >= 3:
        labels[0] = "*"
        yield ".".join(labels)
        labels = labels[1:]
    if host != "*":
        yield "*"


class RouteTable:
    """Routes to targets (``type = http`` proxies); see the module doc."""

    def __init__(self):
        # domain -> route_by_http_user -> [(location, target)], kept sorted
        # by location in reverse lexicographic order.
        self._domains = {}

    def __len__(self):
        return sum(len(routes) for users in self._domains.values()
                   for routes in users.values())

    def _routes(self, domain: str, user: str) -> list:
        return self._domains.get(domain, {}).get(user, [])

    def taken(self, domain: str, location: str, user: str = "") -> bool:
        """Whether this route key is registered."""
        domain = normalize_domain(domain)
        return any(loc == location for loc, _ in self._routes(domain, user))

    def add(self, keys: Iterable[tuple], target) -> None:
        """
        Register every ``(domain, location, route_by_http_user)`` of *keys*
        for *target*, or none of them: :class:`RouteConflict` when one is
        taken (or repeated in *keys*).
        """
        wanted = []
        for domain, location, user in keys:
            key = (normalize_domain(domain), location, user)
            if key in wanted or self.taken(*key):
                raise RouteConflict(*key)
            wanted.append(key)
        for domain, location, user in wanted:
            routes = self._domains.setdefault(domain, {}).setdefault(user, [])
            routes.append((location, target))
            routes.sort(key=lambda route: route[0], reverse=True)

    def remove(self, target) -> int:
        """Forget every route of *target*; return how many there were."""
        removed = 0
        for domain in list(self._domains):
            users = self._domains[domain]
            for user in list(users):
                kept = [r for r in users[user] if r[1] is not target]
                removed += len(users[user]) - len(kept)
                if kept:
                    users[user] = kept
                else:
                    del users[user]
            if not users:
                del self._domains[domain]
        return removed

    def _find(self, domain: str, path: str, user: str):
        for location, target in self._routes(domain, user):
            if path.startswith(location):
                return target
        return None

    def lookup(self, host: str, path: str, user: str = "") -> Optional[object]:
        """
        The target serving *path* on *host* (a raw Host value is fine) for
        basic-auth *user*, or None.
        """
        host = request_host(host)
        for domain in candidate_domains(host):
            if user:
                target = self._find(domain, path, user)
                if target is not None:
                    return target
            target = self._find(domain, path, "")
            if target is not None:
                return target
        return None
