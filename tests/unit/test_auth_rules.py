# -*- test-case-name: tests.unit.test_auth_rules -*-
"""
Tests for labrelay.server.auth (every reason a Login, NewWorkConn or Ping
is refused, and acceptance) and labrelay.server.refusals (how refusals
are logged), in memory: a task.Clock, the real throttle, replay cache and
registry, and fake connections and controls.
"""

import attrs
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.server import auth
from labrelay.server.auth import Authenticator, Verdict
from labrelay.server.control import carrier_of
from labrelay.server.guard import REPEAT_GRACE, RateLimitedLog, ReplayCache
from labrelay.server.refusals import RefusalLog
from labrelay.server.registry import Registry
from labrelay.throttle import BASE_DELAY, MAX_DELAY, PasswordThrottle

TOKEN = "secret"
NOW = 1_700_000_000
RUN_ID = "0123456789abcdef"


@attrs.define(eq=False)
class FakeSession:
    """What the authenticator reads of a ServerSession."""

    logged_in: bool = False
    work_for: str = None


@attrs.define(eq=False)
class FakeStream:
    """A yamux stream as a connection's transport."""

    session: FakeSession


@attrs.define(eq=False)
class FakeConnection:
    """What the authenticator reads of a ServerConnection."""

    source: str = "192.0.2.1"
    transport: object = attrs.Factory(object)
    session: FakeSession = None
    alive: bool = True

    @property
    def peer(self) -> str:
        return f"{self.source}:50000"


def stream(session=None) -> FakeConnection:
    """A connection that is a stream of *session* (a new one: None)."""
    session = session or FakeSession()
    return FakeConnection(transport=FakeStream(session), session=session)


@attrs.define(eq=False)
class FakeControl:
    """What the authenticator and the registry read of a ControlSession."""

    run_id: str
    connection: FakeConnection
    user: str = ""
    token: str = TOKEN
    authenticate_heartbeats: bool = True
    authenticate_new_work_conns: bool = True
    closed: bool = False

    @property
    def source(self) -> str:
        return self.connection.source

    @property
    def peer(self) -> str:
        return self.connection.peer

    @property
    def carrier(self):
        return carrier_of(self.connection)


def login(user="", run_id="", timestamp=NOW, token=TOKEN):
    return messages.Login(
        version="0.51.3",
        user=user,
        run_id=run_id,
        timestamp=timestamp,
        pool_count=1,
        privilege_key=privilege_key(token, timestamp),
    )


def new_work_conn(run_id=RUN_ID, timestamp=NOW, token=TOKEN):
    return messages.NewWorkConn(
        run_id=run_id,
        timestamp=timestamp,
        privilege_key=privilege_key(token, timestamp),
    )


def ping(timestamp=NOW, token=TOKEN):
    return messages.Ping(
        timestamp=timestamp, privilege_key=privilege_key(token, timestamp)
    )


class AuthTestCase(SynchronousTestCase):
    extra = ""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.config = parse_server_config(f"[common]\ntoken = {TOKEN}\n{self.extra}")
        self.registry = Registry()
        self.throttle = PasswordThrottle(self.clock)
        self.replays = ReplayCache(self.clock, skew=self.config.auth_timestamp_skew)
        self.run_ids = iter(f"{n:016x}" for n in range(1, 100))
        self.authenticator = Authenticator(
            self.clock,
            lambda: self.config,
            self.registry,
            self.throttle,
            self.replays,
            new_run_id=lambda: next(self.run_ids),
        )
        self.addCleanup(self.throttle.close)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def reconfigure(self, extra: str) -> None:
        self.config = parse_server_config(f"[common]\ntoken = {TOKEN}\n{extra}")

    def control(
        self, run_id=RUN_ID, user="", connection=None, **settings
    ) -> FakeControl:
        control = FakeControl(run_id, connection or FakeConnection(), user, **settings)
        self.registry.add_control(control)
        return control

    def answer(self, deferred, after: float = 0) -> Verdict:
        """The verdict *deferred* fires with exactly *after* seconds from
        now."""
        if after:
            self.assertNoResult(deferred)
            self.clock.advance(after - 0.001)
            self.assertNoResult(deferred)
            self.clock.advance(0.001)
        return self.successResultOf(deferred)

    def fail_once(self, source="192.0.2.1") -> None:
        """Put *source* in backoff: one wrong login, answered."""
        d = self.authenticator.verify_login(
            FakeConnection(source), login(token="wrong")
        )
        self.answer(d, BASE_DELAY)

    def assertRefused(self, verdict, reason, log, client="", **fields):
        self.assertFalse(verdict.accepted)
        self.assertEqual(
            (verdict.reason, verdict.log, verdict.client), (reason, log, client)
        )
        for name, value in fields.items():
            self.assertEqual(getattr(verdict, name), value, name)


class LoginTests(AuthTestCase):
    """verify_login: each refusal reason, and acceptance."""

    def test_accepted_with_a_new_run_id(self):
        """A right key from a source not in backoff: accepted at once with
        a new run_id, and its pair remembered under it."""
        message = login()
        verdict = self.answer(
            self.authenticator.verify_login(FakeConnection(), message)
        )
        self.assertEqual(verdict, Verdict(True, run_id=f"{1:016x}"))
        self.assertEqual(
            self.replays.first_run_id(NOW, message.privilege_key), f"{1:016x}"
        )

    def test_accepted_replacing_itself(self):
        """A Login naming the live run_id of the same user's client is
        accepted with that run_id; the client is not counted twice
        against the limits."""
        self.reconfigure("max_clients_per_user = 1\nmax_clients_per_source = 1\n")
        self.control(user="alice")
        verdict = self.answer(
            self.authenticator.verify_login(
                FakeConnection(), login(user="alice", run_id=RUN_ID)
            )
        )
        self.assertEqual((verdict.accepted, verdict.run_id), (True, RUN_ID))

    def test_accepted_after_the_source_delay(self):
        """A right key from a source in backoff is held, then accepted;
        the verdict says how long."""
        self.fail_once()
        verdict = self.answer(
            self.authenticator.verify_login(FakeConnection(), login()), 2 * BASE_DELAY
        )
        self.assertTrue(verdict.accepted)
        self.assertEqual(verdict.delay, 2 * BASE_DELAY)

    def test_wrong_key(self):
        """A wrong key: answered after the throttle's delay, logged as an
        auth failure of its source."""
        verdict = self.answer(
            self.authenticator.verify_login(FakeConnection(), login(token="wrong")),
            BASE_DELAY,
        )
        self.assertRefused(
            verdict,
            auth.WRONG_KEY,
            "login refused: wrong token (version=0.51.3); failure 1 in a row "
            "from 192.0.2.1, answered after 0.5s",
            "token in login doesn't match token from configuration",
            delay=BASE_DELAY,
            quiet=auth.AUTH_FAILURES,
            source="192.0.2.1",
        )

    def test_throttled(self):
        """Beyond auth_pending_per_source held attempts, a Login is
        refused unchecked, max_delay later."""
        self.throttle.max_pending = 1
        self.fail_once()
        held = self.authenticator.verify_login(FakeConnection(), login())
        verdict = self.answer(
            self.authenticator.verify_login(FakeConnection(), login()), MAX_DELAY
        )
        self.assertRefused(
            verdict,
            auth.THROTTLED,
            "login: refused without checking it, too many attempts from "
            "192.0.2.1 waiting for their answer",
            "too many failed logins from 192.0.2.1; try again later",
            delay=MAX_DELAY,
            quiet=auth.AUTH_FAILURES,
            source="192.0.2.1",
        )
        self.assertTrue(self.successResultOf(held).accepted)

    def test_summary_errors_to_client(self):
        """Without detailed_errors_to_client the client is told frp's
        summary, whatever the reason."""
        self.reconfigure(
            "detailed_errors_to_client = false\nmax_clients_per_user = 1\n"
        )
        self.control(run_id="other", user="alice")
        wrong = self.answer(
            self.authenticator.verify_login(FakeConnection(), login(token="wrong")),
            BASE_DELAY,
        )
        full = self.answer(
            self.authenticator.verify_login(
                FakeConnection("192.0.2.9"), login(user="alice")
            )
        )
        self.assertEqual((wrong.client, full.client), ("register control error",) * 2)
        self.assertEqual(full.reason, auth.CLIENT_LIMIT)

    def test_gone_while_held(self):
        """A connection that closed while its answer was held: refused
        with nothing to say, and its pair not remembered."""
        self.fail_once()
        connection = FakeConnection()
        message = login()
        d = self.authenticator.verify_login(connection, message)
        connection.alive = False
        verdict = self.answer(d, 2 * BASE_DELAY)
        self.assertRefused(verdict, auth.GONE, "", delay=2 * BASE_DELAY)
        self.assertEqual(len(self.replays), 0)

    def test_stale(self):
        """With auth_timestamp_skew, a timestamp too far behind."""
        self.reconfigure("auth_timestamp_skew = 60\n")
        verdict = self.answer(
            self.authenticator.verify_login(
                FakeConnection(), login(timestamp=NOW - 100)
            )
        )
        error = "timestamp 1699999900 is 100s behind the server's clock"
        self.assertEqual(verdict.reason, auth.STALE)
        self.assertTrue(verdict.client.startswith(error), verdict.client)
        self.assertTrue(verdict.log.startswith(f"login refused: {error}"))
        self.assertTrue(verdict.log.endswith("(user='' run_id='')"))

    def test_replayed(self):
        """A Login's pair presented again after the grace period; the log
        names the run_id that used it first."""
        message = login()
        self.answer(self.authenticator.verify_login(FakeConnection(), message))
        self.clock.advance(REPEAT_GRACE + 1)
        verdict = self.answer(
            self.authenticator.verify_login(FakeConnection(), message)
        )
        error = (
            f"replayed credentials: timestamp {NOW} and its "
            f"privilege_key were first used 12s ago"
        )
        self.assertRefused(
            verdict,
            auth.REPLAYED,
            f"login refused: {error} (first used by run_id {1:016x}) "
            f"(user='' run_id='')",
            error,
        )

    def test_repeat_within_grace_accepted(self):
        """The same pair again within the grace period: accepted (two
        clients sharing a token, reconnecting in the same second)."""
        self.answer(self.authenticator.verify_login(FakeConnection(), login()))
        self.clock.advance(REPEAT_GRACE)
        self.assertTrue(
            self.answer(
                self.authenticator.verify_login(FakeConnection("192.0.2.2"), login())
            ).accepted
        )

    def test_replayed_from_a_work_connection(self):
        """A NewWorkConn's pair reused by a Login, even at once."""
        self.reconfigure("tcp_mux = false\n")
        control = self.control()
        self.assertTrue(
            self.answer(
                self.authenticator.verify_work_conn(FakeConnection(), new_work_conn())
            ).accepted
        )
        verdict = self.answer(
            self.authenticator.verify_login(
                FakeConnection(), login(run_id=control.run_id)
            )
        )
        self.assertEqual(verdict.reason, auth.REPLAYED)
        self.assertIn("first used by a NewWorkConn, not a Login", verdict.client)

    def test_run_id_of_another_user(self):
        """A Login naming the live run_id of another user's client."""
        self.control(user="alice")
        verdict = self.answer(
            self.authenticator.verify_login(
                FakeConnection("192.0.2.7"), login(user="bob", run_id=RUN_ID)
            )
        )
        error = f"run_id [{RUN_ID}] belongs to a client of another user"
        self.assertRefused(
            verdict,
            auth.FOREIGN_RUN_ID,
            f"login refused: {error} (user 'alice', logged in from "
            f"192.0.2.1:50000) (user='bob' run_id='{RUN_ID}')",
            error,
        )

    def test_run_id_of_a_closed_client(self):
        """A closed client's run_id may be taken by anyone."""
        self.control(user="alice", closed=True)
        self.assertTrue(
            self.answer(
                self.authenticator.verify_login(
                    FakeConnection(), login(user="bob", run_id=RUN_ID)
                )
            ).accepted
        )

    def test_client_limits(self):
        """max_logins_per_connection, max_clients_per_user and
        max_clients_per_source, each named."""
        self.reconfigure(
            "max_logins_per_connection = 1\n"
            "max_clients_per_user = 2\n"
            "max_clients_per_source = 3\n"
        )
        carrier = FakeSession()
        self.control("r1", "alice", stream(carrier))
        cases = [
            (
                FakeConnection(transport=FakeStream(carrier)),
                "bob",
                "too many clients on this connection: 1 (the "
                "max_logins_per_connection of this server is 1)",
            ),
            (FakeConnection("192.0.2.2"), "bob", None),
        ]
        self.control("r2", "alice", FakeConnection("192.0.2.3"))
        cases += [
            (
                FakeConnection("192.0.2.4"),
                "alice",
                "too many clients of user [alice]: 2 (the max_clients_per_user "
                "of this server is 2)",
            ),
        ]
        self.control("r3", "carol", FakeConnection())
        self.control("r4", "carol", FakeConnection())
        cases += [
            (
                FakeConnection(),
                "dave",
                "too many clients from 192.0.2.1: 3 (the max_clients_per_source"
                " of this server is 3)",
            ),
        ]
        for connection, user, error in cases:
            verdict = self.answer(
                self.authenticator.verify_login(
                    connection, login(user=user, timestamp=NOW + len(user))
                )
            )
            if error is None:
                self.assertTrue(verdict.accepted)
                continue
            self.assertRefused(
                verdict,
                auth.CLIENT_LIMIT,
                f"login refused: {error} (user={user!r} run_id='')",
                error,
            )


class WorkConnTests(AuthTestCase):
    """verify_work_conn: each refusal reason, and acceptance."""

    extra = "authenticate_new_work_conns = true\ntcp_mux = false\n"
    mux = "authenticate_new_work_conns = true\n"

    def verify(self, connection=None, message=None, after: float = 0):
        return self.answer(
            self.authenticator.verify_work_conn(
                connection or FakeConnection(), message or new_work_conn()
            ),
            after,
        )

    def test_accepted(self):
        """A right key for a live client from its address: accepted at
        once, naming the client; its pair remembered."""
        self.control()
        self.assertEqual(self.verify(), Verdict(True, run_id=RUN_ID))
        self.assertEqual(len(self.replays), 1)

    def test_unknown_run_id(self):
        """No live client with that run_id (none, or a closed one)."""
        for closed in (False, True):
            if closed:
                self.control(closed=True)
            self.assertRefused(
                self.verify(),
                auth.UNKNOWN_RUN_ID,
                f"work connection for unknown run_id {RUN_ID!r}; closing",
                f"no client with run_id [{RUN_ID}]",
            )

    def test_from_another_address(self):
        """Without tcp_mux: from another address than its client's,
        unless work_conn_same_source is off."""
        self.control()
        self.assertRefused(
            self.verify(FakeConnection("192.0.2.66")),
            auth.WRONG_CARRIER,
            f"work connection for {RUN_ID} refused: from 192.0.2.66, but its "
            f"client logged in from 192.0.2.1 (work_conn_same_source)",
            auth.INVALID_WORK_CONN,
            quiet=auth.WORK_BINDING,
            source="192.0.2.66",
        )
        self.reconfigure(self.extra + "work_conn_same_source = false\n")
        self.assertTrue(self.verify(FakeConnection("192.0.2.66")).accepted)

    def test_stream_of_another_session(self):
        """With tcp_mux: a stream of another session than its client's
        (or no stream at all)."""
        self.reconfigure(self.mux)
        client = FakeSession(logged_in=True)
        self.control(connection=stream(client))
        for connection in (stream(), FakeConnection()):
            self.assertRefused(
                self.verify(connection),
                auth.WRONG_CARRIER,
                f"work connection for {RUN_ID} refused: not a stream of its "
                f"client's yamux session",
                auth.INVALID_WORK_CONN,
                quiet=auth.WORK_BINDING,
                source="192.0.2.1",
            )
        self.assertTrue(self.verify(stream(client)).accepted)

    def test_wrong_key(self):
        """A wrong key, through the throttle."""
        self.control()
        self.assertRefused(
            self.verify(message=new_work_conn(token="wrong"), after=BASE_DELAY),
            auth.WRONG_KEY,
            "work connection with a wrong privilege key; failure 1 in a row "
            "from 192.0.2.1, answered after 0.5s",
            auth.INVALID_WORK_CONN,
            delay=BASE_DELAY,
            quiet=auth.AUTH_FAILURES,
            source="192.0.2.1",
        )

    def test_throttled(self):
        """Too many attempts of the source waiting: refused unchecked."""
        self.control()
        self.throttle.max_pending = 1
        self.fail_once()
        held = self.authenticator.verify_work_conn(FakeConnection(), new_work_conn())
        self.assertRefused(
            self.verify(after=MAX_DELAY),
            auth.THROTTLED,
            "work connection: refused without checking it, too many "
            "attempts from 192.0.2.1 waiting for their answer",
            auth.INVALID_WORK_CONN,
            delay=MAX_DELAY,
        )
        self.assertTrue(self.successResultOf(held).accepted)

    def test_gone_while_held(self):
        """The connection closed while its answer was held."""
        self.control()
        self.fail_once()
        connection = FakeConnection()
        d = self.authenticator.verify_work_conn(connection, new_work_conn())
        connection.alive = False
        self.assertRefused(self.answer(d, 2 * BASE_DELAY), auth.GONE, "")

    def test_client_gone_while_held(self):
        """Its client went away while the answer was held."""
        control = self.control()
        self.fail_once()
        d = self.authenticator.verify_work_conn(FakeConnection(), new_work_conn())
        control.closed = True
        self.assertRefused(
            self.answer(d, 2 * BASE_DELAY),
            auth.CLIENT_GONE,
            f"work connection for {RUN_ID} refused: its client has gone",
            auth.INVALID_WORK_CONN,
        )

    def test_stale(self):
        """With auth_timestamp_skew, a timestamp too far ahead."""
        self.reconfigure(self.extra + "auth_timestamp_skew = 60\n")
        self.control()
        verdict = self.verify(message=new_work_conn(timestamp=NOW + 100))
        self.assertEqual(
            (verdict.reason, verdict.client), (auth.STALE, auth.INVALID_WORK_CONN)
        )
        self.assertIn("100s ahead of the server's clock", verdict.log)

    def test_replayed(self):
        """A NewWorkConn's pair presented again after the grace period."""
        self.control()
        self.verify()
        self.clock.advance(REPEAT_GRACE + 1)
        self.assertRefused(
            self.verify(),
            auth.REPLAYED,
            f"work connection for {RUN_ID} refused: replayed credentials: "
            f"timestamp {NOW} and its privilege_key were first used 12s ago "
            f"(first used by run_id {RUN_ID})",
            auth.INVALID_WORK_CONN,
        )

    def test_unauthenticated_by_the_login_settings(self):
        """A client that logged in without authenticate_new_work_conns:
        its work connections are not checked (a wrong key passes), and
        nothing is remembered."""
        self.control(authenticate_new_work_conns=False)
        self.assertTrue(self.verify(message=new_work_conn(token="wrong")).accepted)
        self.assertEqual(len(self.replays), 0)

    def test_work_only_sessions(self):
        """A stream of a session without a control binds the session to
        its client, up to max_sessions_per_client; beyond, or for a
        second client, it is refused (and the session is to close)."""
        self.reconfigure(
            self.mux + "max_sessions_per_client = 2\nwork_conn_same_source = false\n"
        )
        self.control()
        self.control("other")
        first, second = FakeSession(), FakeSession()
        self.assertTrue(self.verify(stream(first)).accepted)
        self.assertTrue(
            self.verify(stream(first), new_work_conn(timestamp=NOW + 1)).accepted
        )
        self.assertTrue(
            self.verify(stream(second), new_work_conn(timestamp=NOW + 2)).accepted
        )
        self.assertEqual(self.registry.work_sessions, {RUN_ID: {first, second}})
        self.assertEqual(first.work_for, RUN_ID)
        self.assertRefused(
            self.verify(stream(), new_work_conn(timestamp=NOW + 3)),
            auth.SESSION_CAP,
            f"work connection for {RUN_ID} refused and its yamux session "
            f"closed: 2 sessions without a control already serve this "
            f"client (max_sessions_per_client = 2)",
            "too many sessions for this client",
            quiet=auth.WORK_SESSIONS,
        )
        self.assertRefused(
            self.verify(stream(first), new_work_conn("other", timestamp=NOW + 4)),
            auth.SESSION_CAP,
            f"work connection for other refused and its yamux session "
            f"closed: the session already serves run_id {RUN_ID}",
            "too many sessions for this client",
            quiet=auth.WORK_SESSIONS,
        )

    def test_session_with_a_control_is_not_bound(self):
        """A stream of a session that carries a control is accepted
        without binding the session."""
        self.reconfigure(self.mux + "max_sessions_per_client = 1\n")
        session = FakeSession(logged_in=True)
        self.control(connection=stream(session))
        self.assertTrue(self.verify(stream(session)).accepted)
        self.assertEqual((session.work_for, self.registry.work_sessions), (None, {}))


class PingTests(AuthTestCase):
    """verify_ping: synchronous, each refusal reason and acceptance."""

    def test_unauthenticated_by_the_login_settings(self):
        """Without authenticate_heartbeats any Ping is accepted."""
        control = self.control(authenticate_heartbeats=False)
        self.assertEqual(
            self.authenticator.verify_ping(control, ping(token="wrong")), auth.ACCEPTED
        )

    def test_accepted(self):
        """A right, fresh key: accepted, remembered under the client."""
        control = self.control()
        message = ping()
        self.assertEqual(
            self.authenticator.verify_ping(control, message), auth.ACCEPTED
        )
        self.assertEqual(self.replays.first_run_id(NOW, message.privilege_key), RUN_ID)

    def test_wrong_key(self):
        """A wrong key (checked with the token of the client's login)."""
        control = self.control(token="old token")
        self.assertRefused(
            self.authenticator.verify_ping(control, ping()),
            auth.WRONG_KEY,
            "Ping refused: wrong privilege key; closing",
            "invalid ping: token mismatch",
        )

    def test_stale(self):
        """With auth_timestamp_skew, a timestamp too far behind."""
        self.reconfigure("auth_timestamp_skew = 60\n")
        verdict = self.authenticator.verify_ping(
            self.control(), ping(timestamp=NOW - 61)
        )
        self.assertEqual(verdict.reason, auth.STALE)
        self.assertTrue(
            verdict.client.startswith(
                "invalid ping: timestamp 1699999939 is 61s behind"
            )
        )

    def test_replayed(self):
        """A Ping's pair presented again after the grace period."""
        control = self.control()
        self.authenticator.verify_ping(control, ping())
        self.clock.advance(REPEAT_GRACE + 1)
        error = (
            f"replayed credentials: timestamp {NOW} and its "
            f"privilege_key were first used 12s ago"
        )
        self.assertRefused(
            self.authenticator.verify_ping(control, ping()),
            auth.REPLAYED,
            f"Ping refused: {error} (first used by run_id {RUN_ID}); closing",
            f"invalid ping: {error}",
        )


class RefusalLogTests(SynchronousTestCase):
    """How labrelay.server.refusals logs verdicts: each rate limit."""

    def setUp(self):
        self.clock = Clock()
        self.lines = []
        self.refusals = RefusalLog(RateLimitedLog(self.clock))
        self.refusals._log = Logger(
            observer=lambda event: self.lines.append(formatEvent(event))
        )

    def refuse(self, peer, reason, quiet="", source=""):
        self.refusals.refused(
            peer, Verdict(False, reason, "no", quiet=quiet, source=source)
        )

    def test_unlimited_and_silent(self):
        """A verdict without a rate limit is always logged; one without
        log text never."""
        for _ in range(3):
            self.refuse("p", auth.STALE)
        self.refusals.refused("p", Verdict(False, auth.GONE))
        self.assertEqual(self.lines, ["p: no"] * 3)

    def test_per_source_limits(self):
        """Auth failures and wrong carriers: one line per source every
        10 s, the next saying how many were held back."""
        for quiet, more in (
            (auth.AUTH_FAILURES, " (2 more failures from s1 suppressed)"),
            (auth.WORK_BINDING, " (2 more suppressed)"),
        ):
            del self.lines[:]
            for _ in range(3):
                self.refuse("p", "", quiet, "s1")
            self.refuse("p", "", quiet, "s2")
            self.clock.advance(10)
            self.refuse("p", "", quiet, "s1")
            self.assertEqual(self.lines, ["p: no", "p: no", f"p: no{more}"])

    def test_work_sessions_limit(self):
        """Refused work-only sessions: one line every 10 s in all, always
        saying how many were held back."""
        for source in ("s1", "s2", "s3"):
            self.refuse("p", auth.SESSION_CAP, auth.WORK_SESSIONS, source)
        self.clock.advance(10)
        self.refuse("p", auth.SESSION_CAP, auth.WORK_SESSIONS)
        self.assertEqual(
            self.lines,
            [
                "p: no (0 more since the last such line)",
                "p: no (2 more since the last such line)",
            ],
        )
