# -*- test-case-name: tests.unit.test_ports,tests.unit.test_name_churn,tests.integration.test_name_churn -*-
"""
Which remote port a ``type = tcp`` proxy gets: :class:`PortAllocator`
owns ``allow_ports``, the ports taken by live proxies and the ports
remembered per proxy name.

A proxy asking for a port gets it if ``allow_ports`` has it and no live
proxy holds it.  One asking for ``remote_port = 0`` first gets back the
port its name had within the last day (so a client that reconnects finds
its port again), then, with ``allow_ports`` unset, a port the system
picks, else up to :data:`PORT_CANDIDATES` free allowed ports at random
(as frp).

Proxy names are chosen by clients, so their churn must not grow this
memory: at most ``max_remembered`` names are remembered (the oldest
reservation is forgotten first), and expired ones are forgotten as new
ones come.  Every operation costs O(1) (amortised), except the scan of
free allowed ports for ``remote_port = 0``.
"""

import random
from collections import OrderedDict

from ..config import PortSet
from ..errors import ProxyError

#: How long a proxy name keeps its port after it closes, in seconds.
RESERVATION_SECONDS = 24 * 3600

#: How many free ports are tried for ``remote_port = 0`` (frp: 5).
PORT_CANDIDATES = 5


class PortAllocator:
    """
    :param clock: an ``IReactorTime``.
    :param allow_ports: a callable giving the running ``allow_ports`` (a
        :class:`~labrelay.config.PortSet`; by default every port); read
        each time, so a reload applies.
    :param max_remembered: a callable giving the most remembered ports
        (0: no bound); read each time.
    :param sample: ``random.sample``'s signature (tests make it
        predictable).
    """

    def __init__(
        self, clock, allow_ports=PortSet, max_remembered=lambda: 0, sample=random.sample
    ):
        self._clock = clock
        self._allow_ports = allow_ports
        self._max_remembered = max_remembered
        self._sample = sample
        self._taken = {}  # port -> proxy name
        # proxy name -> (port, expires), oldest reservation first
        self._remembered = OrderedDict()

    # Choosing.

    def allocate(self, name: str, requested: int, listen) -> int:
        """
        Listen for proxy *name* on *requested* (0: any port it may have)
        with ``listen(port)``, which returns the bound port or raises
        :class:`~labrelay.errors.ProxyError`; take and return the port.
        Raises ProxyError when no port can be had.
        """
        if requested < 0 or requested > 65535:
            raise ProxyError(f"remote_port {requested} is not a port")
        if requested:
            if requested not in self._allow_ports():
                raise ProxyError("port not allowed")
            if self.taken(requested):
                raise ProxyError("port already used")
            port = listen(requested)
        else:
            port = self._listen_any(name, listen)
        self.take(port, name)
        return port

    def _listen_any(self, name: str, listen) -> int:
        allowed = self._allow_ports()
        remembered = self.remembered_port(name)
        candidates = []
        if remembered and remembered in allowed:
            candidates.append(remembered)
        if allowed.is_all():
            candidates.append(0)  # the system picks a free port
        else:
            free = [p for p in allowed if not self.taken(p) and p != remembered]
            candidates += self._sample(free, min(PORT_CANDIDATES, len(free)))
        for port in candidates:
            try:
                return listen(port)
            except ProxyError:
                continue
        raise ProxyError("no available port")

    # Taken ports.

    def taken(self, port: int) -> bool:
        """Whether a live proxy holds *port*."""
        return port in self._taken

    def take(self, port: int, name: str) -> None:
        """Proxy *name* listens on *port*: it is taken, and remembered for
        the name for :data:`RESERVATION_SECONDS`."""
        self._taken[port] = name
        self._remembered.pop(name, None)
        self._remembered[name] = (port, self._clock.seconds() + RESERVATION_SECONDS)
        self.forget_expired()
        limit = self._max_remembered()
        while 0 < limit < len(self._remembered):
            self._remembered.popitem(last=False)

    def release(self, port: int, name: str) -> None:
        """Proxy *name* closed: *port* is free (and still remembered)."""
        if self._taken.get(port) == name:
            del self._taken[port]

    # Remembered ports.

    def remembered_port(self, name: str):
        """The port this proxy name last had, if within a day and free."""
        entry = self._remembered.get(name)
        if entry is None:
            return None
        port, expires = entry
        if expires < self._clock.seconds():
            del self._remembered[name]
            return None
        owner = self._taken.get(port)
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
