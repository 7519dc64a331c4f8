# -*- test-case-name: tests.unit.test_vhost_routes -*-
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

A route's target is the ``type = http`` proxy that serves it
(:class:`~labrelay.server.vhost.proxy.HttpProxy`): what the vhost asks of
it is its settings (``name``, ``http_user`` ...) and ``open_work()``, a
Deferred of a started work connection (as frp's
``RouteConfig.CreateConnFn``), so the vhost never reaches a client's
control connection or work pool itself.

Host names are compared case-insensitively, without a port and without one
trailing dot (``Example.COM.:8080`` is ``example.com``).

Costs, because a NewProxy is hostile input and a lookup runs per request:

* :meth:`RouteTable.add` and :meth:`RouteTable.remove` cost O(keys of that
  target): a route is a dict entry under ``domain -> user -> location``,
  and a reverse index keeps each target's keys, so removal never scans
  other targets' routes.
* A lookup costs O(candidate domains x distinct location lengths of one
  ``(domain, user)``), each step one slice and one dict probe: the
  longest-prefix match tries the prefixes of the path whose lengths are
  registered there, longest first (the same winner as the reverse
  lexicographic order: every matching location is a prefix of the
  path).  Location lengths are bounded (:data:`MAX_LOCATION_LENGTH`), so
  the cost never depends on how many routes exist.

Domains are at most :data:`MAX_DOMAIN_LENGTH` characters (DNS's limit) and
locations at most :data:`MAX_LOCATION_LENGTH`; :meth:`RouteTable.add`
refuses longer ones.  How many keys one proxy may register is the caller's
limit (``max_domains_per_proxy`` and friends, in
:mod:`labrelay.server.vhost.proxy`).
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Optional

from ...errors import ProxyError

#: The error text frp sends in NewProxyResp for a taken route key.
CONFLICT = "router config conflict"
#: The longest domain a route may have (DNS: 253 characters).
MAX_DOMAIN_LENGTH = 253
#: The longest location a route may have; bounds the cost of a lookup.
MAX_LOCATION_LENGTH = 512


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


class _Locations:
    """The routes of one ``(domain, user)``: location -> target, and the
    distinct location lengths, ascending, for the prefix match."""

    __slots__ = ("targets", "_lengths", "_count")

    def __init__(self, locations: list, target):
        """*locations* (at least one, distinct) all map to *target*."""
        self.targets = dict.fromkeys(locations, target)
        self._count = Counter(map(len, locations))  # length -> locations
        self._lengths = sorted(self._count)  # distinct, ascending

    def add(self, locations: list, target) -> None:
        """Map each of *locations* (none of them present) to *target*."""
        self.targets.update(dict.fromkeys(locations, target))
        self._count.update(map(len, locations))
        if len(self._count) != len(self._lengths):
            self._lengths = sorted(self._count)

    def remove(self, locations: list) -> None:
        """Forget each of *locations* (all present)."""
        targets = self.targets
        for location in locations:
            del targets[location]
        self._count.subtract(map(len, locations))
        for n in [n for n in set(map(len, locations)) if self._count[n] <= 0]:
            del self._count[n]
        if len(self._count) != len(self._lengths):
            self._lengths = sorted(self._count)

    def find(self, path: str):
        """The target of the longest location that prefixes *path*."""
        targets = self.targets
        for n in reversed(self._lengths):
            if n <= len(path):
                target = targets.get(path[:n])
                if target is not None:
                    return target
        return None


class RouteTable:
    """Routes to targets (``type = http`` proxies); see the module doc."""

    def __init__(self):
        # domain -> route_by_http_user -> _Locations
        self._domains = {}
        # target -> [(domain, user, [location])]: the reverse index that
        # makes remove cheap
        self._keys = {}
        self._size = 0

    def __len__(self):
        return self._size

    def _locations(self, domain: str, user: str):
        users = self._domains.get(domain)
        return None if users is None else users.get(user)

    def taken(self, domain: str, location: str, user: str = "") -> bool:
        """Whether this route key is registered."""
        locations = self._locations(normalize_domain(domain), user)
        return locations is not None and location in locations.targets

    def keys_of(self, target) -> list:
        """The ``(domain, location, user)`` keys of *target* (domains
        normalized)."""
        return [
            (domain, location, user)
            for domain, user, locations in self._keys.get(target, ())
            for location in locations
        ]

    def add(self, keys: Iterable[tuple], target) -> None:
        """
        Register every ``(domain, location, route_by_http_user)`` of *keys*
        for *target*, or none of them: :class:`RouteConflict` when one is
        taken (or repeated in *keys*), :class:`~labrelay.errors.ProxyError`
        when a domain or location is too long.
        """
        # (domain, user) -> locations; each domain normalized once
        groups = {}
        domains = {}
        for domain, location, user in keys:
            name = domains.get(domain)
            if name is None:
                if len(domain) > MAX_DOMAIN_LENGTH + 1:  # one trailing dot
                    raise ProxyError(
                        f"domain is longer than {MAX_DOMAIN_LENGTH} characters"
                    )
                name = domains[domain] = normalize_domain(domain)
            if len(location) > MAX_LOCATION_LENGTH:
                raise ProxyError(
                    f"location is longer than {MAX_LOCATION_LENGTH} characters"
                )
            group = groups.get((name, user))
            if group is None:
                group = groups[(name, user)] = []
            group.append(location)
        for (domain, user), locations in groups.items():
            distinct = set(locations)
            if len(distinct) != len(locations):
                seen = set()
                for location in locations:
                    if location in seen:
                        raise RouteConflict(domain, location, user)
                    seen.add(location)
            existing = self._locations(domain, user)
            if existing is not None and not distinct.isdisjoint(existing.targets):
                raise RouteConflict(
                    domain, min(distinct.intersection(existing.targets)), user
                )
        added = 0
        for (domain, user), locations in groups.items():
            users = self._domains.setdefault(domain, {})
            table = users.get(user)
            if table is None:
                users[user] = _Locations(locations, target)
            else:
                table.add(locations, target)
            added += len(locations)
        self._keys.setdefault(target, []).extend(
            (domain, user, locations) for (domain, user), locations in groups.items()
        )
        self._size += added

    def remove(self, target) -> int:
        """Forget every route of *target*; return how many there were."""
        removed = 0
        for domain, user, locations in self._keys.pop(target, ()):
            users = self._domains[domain]
            table = users[user]
            removed += len(locations)
            if len(table.targets) != len(locations):
                table.remove(locations)
            else:  # all of them: drop the table whole
                del users[user]
                if not users:
                    del self._domains[domain]
        self._size -= removed
        return removed

    def _find(self, domain: str, path: str, user: str):
        locations = self._locations(domain, user)
        return None if locations is None else locations.find(path)

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
