# -*- test-case-name: tests.unit.test_auth_rules,tests.unit.test_auth_hardening,tests.integration.test_auth_hardening -*-
"""
Who may speak to the server: :class:`Authenticator` decides each Login,
NewWorkConn and authenticated Ping and says why in a :class:`Verdict`.
It sends nothing and closes nothing (the connection and the control act
on the verdict); its only effects are on the records it keeps for later
decisions: the replay cache, and which client a work-only yamux session
serves.  All time comes from its clock.

The rules of a first message, in order: the privilege key, through the
password throttle (:mod:`labrelay.throttle`: a source in backoff is
answered late, right key or not, and one with too many attempts waiting
is refused unchecked); then ``auth_timestamp_skew`` (when on) and the
replay cache (which also refuses a Login reusing another message type's
proof, :class:`~labrelay.server.guard.ReplayCache`).

A Login naming a live run_id must come from the same ``user`` (no
takeover across users), and must fit the login limits
(``max_logins_per_connection``, ``max_clients_per_user``,
``max_clients_per_source``; a client replacing itself is not counted
twice).  An accepted Login gets its run_id (a new one if it named none).

A NewWorkConn only ever joins the pool of the control its run_id names,
only from that control's yamux session (tcp_mux) or address
(:meth:`Authenticator.work_conn_binding_error`), and is authenticated with
the settings that control logged in with.  A work connection that is a
stream of a session without a control binds that session to its client,
within the client's ``max_sessions_per_client``.

A Ping is checked only under the control's ``authenticate_heartbeats``:
its key (no throttle: it travels inside the control's encryption),
freshness and replay.
"""

import secrets

import attrs
from twisted.internet.defer import succeed

from ..protocol.auth import check_privilege_key, timestamp_skew_error
from ..throttle import FAIL, PASS, REFUSED
from .control import carrier_of

# Why a message is refused (Verdict.reason).

#: too many attempts of the source wait for their answer: not checked
THROTTLED = "throttled"
#: the privilege key does not match the token
WRONG_KEY = "wrong key"
#: the connection closed while its answer was held (nothing to say)
GONE = "gone"
#: the timestamp is outside ``auth_timestamp_skew``
STALE = "stale"
#: the (timestamp, key) pair was used before (the replay cache)
REPLAYED = "replayed"
#: a Login naming the live run_id of another user's client
FOREIGN_RUN_ID = "foreign run_id"
#: a Login beyond ``max_logins_per_connection`` or ``max_clients_per_*``
CLIENT_LIMIT = "client limit"
#: a NewWorkConn naming no live client
UNKNOWN_RUN_ID = "unknown run_id"
#: a NewWorkConn not on its client's yamux session, or from another address
WRONG_CARRIER = "wrong carrier"
#: the client went away while the NewWorkConn's answer was held
CLIENT_GONE = "client gone"
#: the work connection's session serves another client, or the client has
#: its ``max_sessions_per_client`` (the session is to be closed)
SESSION_CAP = "session cap"

# Rate limits of the log lines (Verdict.quiet; see labrelay.server.refusals).

#: failed password checks: one line per source every few seconds
AUTH_FAILURES = "auth-failure"
#: work connections on the wrong carrier: one line per source
WORK_BINDING = "work-binding"
#: work-only sessions refused: one line every few seconds in all
WORK_SESSIONS = "work sessions"

#: what a refused NewWorkConn is told (frp's text)
INVALID_WORK_CONN = "invalid NewWorkConn"


def new_run_id() -> str:
    """16 lowercase hex characters, as frp."""
    return secrets.token_hex(8)


@attrs.frozen
class Verdict:
    """
    What :class:`Authenticator` decided about one message.

    :ivar accepted: whether the message may do what it asks.
    :ivar reason: why it was refused (one of this module's reasons).
    :ivar log: the warning the server logs after the peer's name ("":
        nothing to log).
    :ivar client: the error the peer is told.
    :ivar delay: seconds the password throttle held the answer.
    :ivar quiet: the rate limit of the log line ("": every line is logged).
    :ivar source: what the rate limit counts the line against.
    :ivar run_id: an accepted Login's or NewWorkConn's client.
    """

    accepted: bool
    reason: str = ""
    log: str = ""
    client: str = ""
    delay: float = 0.0
    quiet: str = ""
    source: str = ""
    run_id: str = ""


#: an accepted Ping
ACCEPTED = Verdict(True)


def throttle_refusal(problem: str, checked, client: str = "") -> Verdict:
    """The verdict on a password check the throttle refused or that failed
    (*checked*, a :class:`labrelay.throttle.Verdict`), *problem* naming
    what was checked."""
    if checked.outcome == REFUSED:
        return Verdict(
            False,
            THROTTLED,
            (
                f"{problem}: refused without checking it, too many attempts "
                f"from {checked.source} waiting for their answer"
            ),
            client,
            checked.delay,
            AUTH_FAILURES,
            checked.source,
        )
    return Verdict(
        False,
        WRONG_KEY,
        (
            f"{problem}; failure {checked.failures} in a row from "
            f"{checked.source}, answered after {checked.delay:g}s"
        ),
        client,
        checked.delay,
        AUTH_FAILURES,
        checked.source,
    )


def mux_session_of(connection):
    """The yamux session *connection* is a stream of, or None."""
    return getattr(connection.transport, "session", None)


class Authenticator:
    """
    See the module docstring.  A connection is read for its ``peer``,
    ``source``, ``alive``, ``session`` (the ServerSession of a stream) and
    transport; a control for its ``run_id``, ``user``, ``source``,
    ``carrier``, ``connection``, ``closed`` and the settings of its login.

    :param clock: an ``IReactorTime``.
    :param config: a callable giving the running ServerConfig.
    :param registry: the :class:`~labrelay.server.registry.Registry`.
    :param throttle: the :class:`~labrelay.throttle.PasswordThrottle`.
    :param replays: the :class:`~labrelay.server.guard.ReplayCache`.
    :param new_run_id: makes the run_id of a Login that names none.
    """

    def __init__(
        self, clock, config, registry, throttle, replays, new_run_id=new_run_id
    ):
        self._clock = clock
        self._config = config
        self._registry = registry
        self._throttle = throttle
        self._replays = replays
        self._new_run_id = new_run_id

    # Login.

    def verify_login(self, connection, login):
        """A Deferred firing with the :class:`Verdict` on *login*."""
        d = self._check_token(
            connection, f"user {login.user}", self._config().token, login
        )
        d.addCallback(self._login_checked, connection, login)
        return d

    def _login_checked(self, checked, connection, login) -> Verdict:
        if checked.outcome == REFUSED:
            return throttle_refusal(
                "login",
                checked,
                self._client_text(
                    f"too many failed logins from {connection.source}; try again later"
                ),
            )
        if checked.outcome == FAIL:
            return throttle_refusal(
                f"login refused: wrong token (version={login.version})",
                checked,
                self._client_text(
                    "token in login doesn't match token from configuration"
                ),
            )
        if not connection.alive:
            return Verdict(False, GONE, delay=checked.delay)
        reason, error, detail = self._freshness(
            login.timestamp, login.privilege_key, login.name
        )
        run_id = login.run_id or self._new_run_id()
        old = self._registry.controls.get(run_id)
        if (
            error is None
            and old is not None
            and not old.closed
            and old.user != login.user
        ):
            reason = FOREIGN_RUN_ID
            error = f"run_id [{run_id}] belongs to a client of another user"
            detail = f" (user {old.user!r}, logged in from {old.peer})"
        if error is None:
            reason, error = (
                CLIENT_LIMIT,
                self._client_limit_error(connection, login, old),
            )
        if error is not None:
            return Verdict(
                False,
                reason,
                (
                    f"login refused: {error}{detail} (user={login.user!r} "
                    f"run_id={login.run_id!r})"
                ),
                self._client_text(error),
                checked.delay,
            )
        self._replays.remember(login.timestamp, login.privilege_key, run_id, login.name)
        return Verdict(True, delay=checked.delay, run_id=run_id)

    def _client_text(
        self, detailed: str, summary: str = "register control error"
    ) -> str:
        return detailed if self._config().detailed_errors_to_client else summary

    def _client_limit_error(self, connection, login, old):
        """Why a correct Login would exceed ``max_logins_per_connection``,
        ``max_clients_per_user`` or ``max_clients_per_source``, or None.
        A client replacing itself (*old*, same run_id) is not counted
        twice."""
        config, registry = self._config(), self._registry
        replaced = old is not None and not old.closed
        carrier = carrier_of(connection)
        for count, limit, key, what in (
            (
                registry.clients_on_connection(carrier)
                - (replaced and old.carrier is carrier),
                config.max_logins_per_connection,
                "max_logins_per_connection",
                "on this connection",
            ),
            (
                registry.clients_of_user(login.user)
                - (replaced and old.user == login.user),
                config.max_clients_per_user,
                "max_clients_per_user",
                f"of user [{login.user}]",
            ),
            (
                registry.clients_from_source(connection.source)
                - (replaced and old.source == connection.source),
                config.max_clients_per_source,
                "max_clients_per_source",
                f"from {connection.source}",
            ),
        ):
            if 0 < limit <= count:
                return (
                    f"too many clients {what}: {count} (the {key} "
                    f"of this server is {limit})"
                )
        return None

    # NewWorkConn.

    def verify_work_conn(self, connection, message):
        """A Deferred firing with the :class:`Verdict` on *message*, a
        NewWorkConn (at once unless its key goes through the throttle)."""
        run_id = message.run_id
        control = self._registry.controls.get(run_id)
        if control is None or control.closed:
            return succeed(
                Verdict(
                    False,
                    UNKNOWN_RUN_ID,
                    f"work connection for unknown run_id {run_id!r}; closing",
                    f"no client with run_id [{run_id}]",
                )
            )
        error = self.work_conn_binding_error(connection, control)
        if error is not None:
            return succeed(
                Verdict(
                    False,
                    WRONG_CARRIER,
                    f"work connection for {run_id} refused: {error}",
                    INVALID_WORK_CONN,
                    quiet=WORK_BINDING,
                    source=connection.source,
                )
            )
        # The settings of the control's login: a reload that changed the
        # token or turned this check on leaves a live client's pool alone.
        if not control.authenticate_new_work_conns:
            return succeed(self._work_session_verdict(connection, control))
        d = self._check_token(connection, f"run_id {run_id}", control.token, message)
        d.addCallback(self._work_conn_checked, connection, message, control)
        return d

    def _work_conn_checked(self, checked, connection, message, control) -> Verdict:
        if checked.outcome != PASS:
            return throttle_refusal(
                "work connection with a wrong privilege key"
                if checked.outcome == FAIL
                else "work connection",
                checked,
                INVALID_WORK_CONN,
            )
        if not connection.alive:
            return Verdict(False, GONE, delay=checked.delay)
        reason, error, detail = self._freshness(
            message.timestamp, message.privilege_key, message.name
        )
        if error is None and control.closed:
            reason, error = CLIENT_GONE, "its client has gone"
        if error is not None:
            return Verdict(
                False,
                reason,
                (f"work connection for {message.run_id} refused: {error}{detail}"),
                INVALID_WORK_CONN,
                checked.delay,
            )
        self._replays.remember(
            message.timestamp, message.privilege_key, message.run_id, message.name
        )
        return self._work_session_verdict(connection, control, checked.delay)

    def work_conn_binding_error(self, connection, control):
        """
        Why *connection* may not join *control*'s pool although it names
        its run_id, or None.  A run_id is no secret (it travels in clear in
        every Login and NewWorkConn without TLS), so it alone proves
        nothing.  With tcp_mux frpc opens its work connections as streams
        of its control's own yamux session: a stream of another session is
        someone else.  Without tcp_mux each is a TCP connection from the
        client's host: one from another address is refused unless
        ``work_conn_same_source = false`` (a client whose NAT spreads its
        connections over several public addresses).
        """
        config = self._config()
        if not config.work_conn_same_source:
            return None
        if config.tcp_mux:
            session = mux_session_of(connection)
            if session is None or session is not mux_session_of(control.connection):
                return "not a stream of its client's yamux session"
            return None
        if connection.source != control.source:
            return (
                f"from {connection.source}, but its client logged in "
                f"from {control.source} (work_conn_same_source)"
            )
        return None

    def _work_session_verdict(self, connection, control, delay: float = 0.0) -> Verdict:
        """
        Accept a work connection, binding its session to *control*'s
        client if it is a stream of a session without a control; refuse
        it (:data:`SESSION_CAP`) when that session serves another client
        or the client has its ``max_sessions_per_client``.
        """
        run_id = control.run_id
        session = connection.session
        if session is None or session.logged_in or session.work_for == run_id:
            return Verdict(True, delay=delay, run_id=run_id)
        cap = self._config().max_sessions_per_client
        count = self._registry.work_sessions_of(run_id)
        if session.work_for is not None:
            why = f"the session already serves run_id {session.work_for}"
        elif cap > 0 and count >= cap:
            why = (
                f"{count} sessions without a control already serve this "
                f"client (max_sessions_per_client = {cap})"
            )
        else:
            self._registry.bind_work_session(session, run_id)
            return Verdict(True, delay=delay, run_id=run_id)
        return Verdict(
            False,
            SESSION_CAP,
            (
                f"work connection for {run_id} refused and its yamux session "
                f"closed: {why}"
            ),
            "too many sessions for this client",
            delay,
            WORK_SESSIONS,
        )

    # Ping.

    def verify_ping(self, control, ping) -> Verdict:
        """The :class:`Verdict` on *ping*, a Ping on *control*'s
        connection (always accepted unless its login asked for
        ``authenticate_heartbeats``)."""
        if not control.authenticate_heartbeats:
            return ACCEPTED
        if not check_privilege_key(control.token, ping.timestamp, ping.privilege_key):
            reason, error, detail = WRONG_KEY, "wrong privilege key", ""
            client = "invalid ping: token mismatch"
        else:
            reason, error, detail = self._freshness(
                ping.timestamp, ping.privilege_key, ping.name
            )
            client = f"invalid ping: {error}"
        if error is not None:
            return Verdict(
                False, reason, f"Ping refused: {error}{detail}; closing", client
            )
        self._replays.remember(
            ping.timestamp, ping.privilege_key, control.run_id, ping.name
        )
        return ACCEPTED

    # Shared rules.

    def _check_token(self, connection, who: str, token: str, message):
        """The throttled check of *message*'s privilege key (see
        labrelay.throttle): a Deferred firing with the throttle's
        verdict."""
        return self._throttle.check(
            "token",
            connection.source,
            who,
            lambda: check_privilege_key(
                token, message.timestamp, message.privilege_key
            ),
        )

    def _freshness(self, timestamp, key, kind: str) -> tuple:
        """``(reason, error, detail)``: why an authenticated message's
        (timestamp, key) is too old, too new or replayed (error None: it
        is fresh); *kind* is the message's type name.  The log-only
        *detail* names the run_id that used a replayed pair first."""
        error = timestamp_skew_error(
            timestamp, self._clock.seconds(), self._config().auth_timestamp_skew
        )
        if error is not None:
            return STALE, error, ""
        error = self._replays.check(timestamp, key, kind)
        if error is not None:
            return (
                REPLAYED,
                error,
                (
                    f" (first used by run_id "
                    f"{self._replays.first_run_id(timestamp, key)})"
                ),
            )
        return "", None, ""
