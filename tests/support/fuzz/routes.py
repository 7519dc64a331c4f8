"""
The vhost route table as a fuzz target: random scripts of registrations,
removals and lookups, checked against a naive model (a list of routes,
scanned) and against its own invariants.  ``python3 -m tools.fuzz --target
routes`` runs it for long, ``tests.unit.test_route_fuzz`` on hypothesis
inputs.

A script is lines of text (any bytes; decoded with replacement):

* ``a T d1,d2 l1,l2 u`` registers domains x locations for user ``u`` as
  target ``T``;
* ``r T`` removes target ``T``;
* ``l host path u`` looks a request up.

Each line's outcome must match the model's: the same target found, the
same keys refused (a conflict or a too-long string), the same size.
"""

from labrelay.errors import ProxyError
from labrelay.server.vhost.routes import (
    MAX_DOMAIN_LENGTH,
    MAX_LOCATION_LENGTH,
    RouteConflict,
    RouteTable,
    candidate_domains,
    normalize_domain,
    request_host,
)

from .core import Target, bound

#: Lines of one script the driver runs (inputs are at most 64 KiB).
MAX_LINES = 400
#: Keys of one registration, and routes in one table, the driver builds
#: (the naive model is slow, and the fuzzer watches its own memory).
MAX_KEYS = 500
MAX_ROUTES = 5000


class NaiveRoutes:
    """The route table's meaning, in the plainest code: a list of
    ``(domain, location, user, target)``, scanned on every operation."""

    def __init__(self):
        self.routes = []

    def add(self, keys, target):
        """A too-long string refuses the lot, before any conflict."""
        if any(
            len(domain) > MAX_DOMAIN_LENGTH + 1 or len(location) > MAX_LOCATION_LENGTH
            for domain, location, _ in keys
        ):
            return "too long"
        wanted = []
        for domain, location, user in keys:
            key = (normalize_domain(domain), location, user)
            if key in wanted or any(r[:3] == key for r in self.routes):
                return "conflict"
            wanted.append(key)
        self.routes += [key + (target,) for key in wanted]
        return "added"

    def remove(self, target):
        before = len(self.routes)
        self.routes = [r for r in self.routes if r[3] != target]
        return before - len(self.routes)

    def lookup(self, host, path, user):
        host = request_host(host)
        for domain in candidate_domains(host):
            for who in ([user] if user else []) + [""]:
                matches = [
                    r
                    for r in self.routes
                    if r[0] == domain and r[2] == who and path.startswith(r[1])
                ]
                if matches:
                    return max(matches, key=lambda r: len(r[1]))[3]
        return None


def check_invariants(table: RouteTable) -> None:
    """No empty level, lengths and counts as the locations say, the
    reverse index and the size agree with the tables."""
    total = 0
    for domain, users in table._domains.items():
        bound(bool(users), f"empty domain level {domain!r}")
        for user, locations in users.items():
            bound(bool(locations.targets), f"empty table {domain!r} {user!r}")
            lengths = sorted({len(loc) for loc in locations.targets})
            bound(
                locations._lengths == lengths,
                f"lengths {locations._lengths} != {lengths}",
            )
            counts = {}
            for loc in locations.targets:
                counts[len(loc)] = counts.get(len(loc), 0) + 1
            bound(dict(+locations._count) == counts, "length counts")
            total += len(locations.targets)
    indexed = sum(len(locs) for groups in table._keys.values() for _, _, locs in groups)
    bound(
        total == indexed == len(table),
        f"routes {total}, indexed {indexed}, len {len(table)}",
    )


def _fields(line: str, n: int) -> list:
    parts = line.split(" ")
    return (parts + [""] * n)[:n]


class RouteTableTarget(Target):
    """Scripts of add/remove/lookup on a RouteTable and the naive model."""

    name = "routes"
    tokens = (
        b"\na ",
        b"\nr ",
        b"\nl ",
        b"*.",
        b"*",
        b"/",
        b".example.com",
        b",",
        b" ",
        b"A",
        b".",
        b"..",
        b"//",
        b":80",
        b"[::1]",
        b"x" * 300,
        b"/" * 600,
    )

    def corpus(self):
        return [
            b"a 1 a.example.com,b.example.com /,/api \n"
            b"a 2 *.example.com  \nl x.a.example.com /api/x \n"
            b"l A.example.com.:80 /apix \nr 1\nl a.example.com / \n"
            b"l nothing.test / ",
            b"a 1 * /a,/ab,/abc bob\na 2 * /a \nl h /abcd bob\n"
            b"l h /abcd \na 3 * /a bob\nr 1\nl h /abcd bob",
            b"a 1 h.example.com / \na 1 h.example.com /x \nr 1\nr 1\n"
            b"a 2 h.example.com.,H.EXAMPLE.COM / ",
        ]

    def run(self, data, cuts):
        table, model = RouteTable(), NaiveRoutes()
        outcomes = []
        text = data.decode("utf-8", "replace")
        for line in text.split("\n")[:MAX_LINES]:
            op, rest = line[:1], line[2:]
            if op == "a":
                target, domains, locations, user = _fields(rest, 4)
                keys = [
                    (d, loc, user)
                    for d in domains.split(",")
                    for loc in locations.split(",")
                ][:MAX_KEYS]
                if len(model.routes) + len(keys) > MAX_ROUTES:
                    continue
                try:
                    table.add(keys, target)
                    got = "added"
                except RouteConflict:
                    got = "conflict"
                except ProxyError:
                    got = "too long"
                want = model.add(keys, target)
            elif op == "r":
                target = rest
                got, want = table.remove(target), model.remove(target)
            elif op == "l":
                host, path, user = _fields(rest, 3)
                got = table.lookup(host, path, user)
                want = model.lookup(host, path, user)
            else:
                continue
            if got != want:
                raise AssertionError(f"{line!r}: table {got!r}, model {want!r}")
            check_invariants(table)
            outcomes.append(
                f"{op}:{'-' if got is None else got}"
                if op != "l"
                else f"l:{got is not None}"
            )
        bound(len(table) == len(model.routes), "sizes differ")
        return ",".join(sorted(set(outcomes))) or "empty"


ROUTES = RouteTableTarget()
