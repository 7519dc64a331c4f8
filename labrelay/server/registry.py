"""
What the server knows about all its clients at once: control sessions by
run_id, proxies by name, and which remote ports are taken or remembered.

Proxy names are global on one server, as in frp (the ``user`` prefix keeps
clients apart).  A port picked for ``remote_port = 0`` is remembered for a
day under the proxy's name, so a client that reconnects gets it back.
"""

RESERVATION_SECONDS = 24 * 3600


class Registry:
    def __init__(self, clock):
        self._clock = clock
        self.controls = {}   # run_id -> ControlSession
        self.proxies = {}    # proxy name -> proxy object
        self._ports = {}     # port -> proxy name
        self._remembered = {}  # proxy name -> (port, expires)

    # Controls.

    def add_control(self, control) -> None:
        self.controls[control.run_id] = control

    def remove_control(self, control) -> None:
        if self.controls.get(control.run_id) is control:
            del self.controls[control.run_id]

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
        self._remembered[name] = (port, self._clock.seconds() + RESERVATION_SECONDS)

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

    def forget_expired(self) -> None:
        now = self._clock.seconds()
        for name, (_, expires) in list(self._remembered.items()):
            if expires < now:
                del self._remembered[name]
