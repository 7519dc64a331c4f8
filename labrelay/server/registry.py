# -*- test-case-name: tests.test_client_limits,tests.test_name_churn -*-
"""
What the server knows about all its clients at once: control sessions by
run_id (and how many there are per TCP connection, per ``user`` and per
source address), proxies by name, and which remote ports are taken or
remembered.

Proxy names are global on one server, as in frp (the ``user`` prefix keeps
clients apart).  A port picked for ``remote_port = 0`` is remembered for a
day under the proxy's name, so a client that reconnects gets it back.  At
most :attr:`Registry.max_remembered` names are remembered (the oldest are
forgotten first), and expired ones are forgotten as new ones come: proxy
names are chosen by clients, so their churn must not grow this memory.

Every operation here costs O(1) (amortised): a client's logout touches its
own entries only.
"""

from collections import OrderedDict

RESERVATION_SECONDS = 24 * 3600


def _count(index: dict, key, delta: int) -> None:
    value = index.get(key, 0) + delta
    if value > 0:
        index[key] = value
    else:
        index.pop(key, None)


class Registry:
    """
    :param clock: an ``IReactorTime``.
    :param max_remembered: a callable giving the most remembered ports
        (0: no bound); read each time, so a reload applies.
    """

    def __init__(self, clock, max_remembered=lambda: 0):
        self._clock = clock
        self._max_remembered = max_remembered
        self.controls = {}   # run_id -> ControlSession
        self.proxies = {}    # proxy name -> proxy object
        self._ports = {}     # port -> proxy name
        # proxy name -> (port, expires), oldest reservation first
        self._remembered = OrderedDict()
        # live controls per carrying TCP connection, user and source
        self._by_connection = {}
        self._by_user = {}
        self._by_source = {}
        self._counted = {}   # control -> (connection, user, source)

    # Controls.

    def add_control(self, control) -> None:
        self.controls[control.run_id] = control
        keys = (control.carrier, control.user, control.source)
        self._counted[control] = keys
        _count(self._by_connection, keys[0], 1)
        _count(self._by_user, keys[1], 1)
        _count(self._by_source, keys[2], 1)

    def remove_control(self, control) -> None:
        if self.controls.get(control.run_id) is control:
            del self.controls[control.run_id]
        keys = self._counted.pop(control, None)
        if keys is not None:
            _count(self._by_connection, keys[0], -1)
            _count(self._by_user, keys[1], -1)
            _count(self._by_source, keys[2], -1)

    def clients_on_connection(self, carrier) -> int:
        """Live controls logged in over one TCP connection."""
        return self._by_connection.get(carrier, 0)

    def clients_of_user(self, user: str) -> int:
        return self._by_user.get(user, 0)

    def clients_from_source(self, source: str) -> int:
        return self._by_source.get(source, 0)

    # Proxies.

    def add_proxy(self, name, proxy) -> None:
        self.proxies[name] = proxy

    def remove_proxy(self, name, proxy) -> None:
        if self.proxies.get(name) is proxy:
            del self.proxies[name]

    # Ports.

    def port_taken(self, port: int) -> bool:
        return port in self._ports

    def take_port(self, port: int, name: str) -> None:
        self._ports[port] = name
        self._remembered.pop(name, None)
        self._remembered[name] = (port,
                                  self._clock.seconds() + RESERVATION_SECONDS)
        self.forget_expired()
        limit = self._max_remembered()
        while 0 < limit < len(self._remembered):
            self._remembered.popitem(last=False)

    def release_port(self, port: int, name: str) -> None:
        if self._ports.get(port) == name:
            del self._ports[port]

    def remembered_port(self, name: str):
        """The port this proxy name last had, if within a day and free."""
        entry = self._remembered.get(name)
        if entry is None:
            return None
        port, expires = entry
        if expires < self._clock.seconds():
            del self._remembered[name]
            return None
        owner = self._ports.get(port)
        if owner is not None and owner != name:
            return None
        return port

    @property
    def remembered(self) -> int:
        """How many names have a remembered port."""
        return len(self._remembered)

    def forget_expired(self) -> None:
        """Forget expired reservations; they are in expiry order, so this
        stops at the first live one."""
        now = self._clock.seconds()
        remembered = self._remembered
        while remembered:
            name, (_, expires) = next(iter(remembered.items()))
            if expires >= now:
                break
            del remembered[name]
