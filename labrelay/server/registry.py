# -*- test-case-name: tests.integration.test_client_limits,tests.unit.test_name_churn,tests.integration.test_name_churn -*-
"""
What the server knows about all its clients at once: control sessions by
run_id (and how many there are per TCP connection, per ``user`` and per
source address), the yamux sessions without a control that serve each
client (*work-only* sessions, see :mod:`labrelay.server.bind_port`), and
proxies by name.  Which remote ports are taken or remembered is
:mod:`labrelay.server.ports`'s.

Proxy names are global on one server, as in frp (the ``user`` prefix keeps
clients apart).

Every operation here costs O(1) (amortised): a client's logout touches its
own entries only.
"""


def _count(index: dict, key, delta: int) -> None:
    value = index.get(key, 0) + delta
    if value > 0:
        index[key] = value
    else:
        index.pop(key, None)


class Registry:
    """Clients and proxies, and the counts the client limits read."""

    def __init__(self):
        self.controls = {}  # run_id -> ControlSession
        self.proxies = {}  # proxy name -> proxy object
        self.work_sessions = {}  # run_id -> its work-only yamux sessions
        # live controls per carrying TCP connection, user and source
        self._by_connection = {}
        self._by_user = {}
        self._by_source = {}
        self._counted = {}  # control -> (connection, user, source)

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

    # Work-only sessions.

    def work_sessions_of(self, run_id: str) -> int:
        """How many yamux sessions without a control serve *run_id*."""
        return len(self.work_sessions.get(run_id, ()))

    def bind_work_session(self, session, run_id: str) -> None:
        """*session* (which carries no control) serves *run_id* from now
        on (``session.work_for``)."""
        session.work_for = run_id
        self.work_sessions.setdefault(run_id, set()).add(session)

    def forget_work_session(self, session) -> None:
        """*session* has ended."""
        sessions = self.work_sessions.get(session.work_for)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.work_sessions[session.work_for]
