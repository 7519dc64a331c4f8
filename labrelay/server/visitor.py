# -*- test-case-name: tests.unit.test_stcp,tests.integration.test_stcp -*-
"""
Admitting a visitor connection: an frp connection whose first message is
NewVisitorConn, asking to reach an stcp proxy
(:mod:`labrelay.server.stcp_proxy`).

The checks, in frp's order, each with frp's error text: the visitor's
``run_id`` names a live client (its login's ``user`` is the visitor's
user; labrelay requires it, frp before v0.50 sent none; refused at once),
the proxy exists
and is secret, ``sign_key`` is ``md5_hex(sk + decimal(timestamp))``,
the visitor's user is in the proxy's ``allow_users``.  labrelay also
refuses a timestamp further than ``auth_timestamp_skew`` from its clock
(frp does not check it), so a sniffed sign key is good for that long
only.  A sign key is not checked for replay: frpc opens many visitor
connections in one second with the same key.

Guessing ``sk``: the signature check goes through the server's
:class:`~labrelay.throttle.PasswordThrottle` in its own ``visitor`` realm,
counted per source and per proxy name, so a source that failed waits
longer for each next answer (at most 8 s), has a bounded number of
answers pending, and an unknown proxy name counts as a failure too (names
cannot be enumerated any faster).  The answer is NewVisitorConnResp with
frp's text (``register visitor conn error`` unless
``detailed_errors_to_client``); a refused connection is closed and reads
nothing more.  Until the answer the connection is unauthenticated for the
server's guard (its caps and ``unauthenticated_timeout`` apply).
"""

import attrs
from twisted.logger import Logger

from ..protocol import messages
from ..protocol.auth import check_privilege_key, timestamp_skew_error
from ..throttle import PASS, REFUSED

#: The throttle realm of visitor sign keys.
REALM = "visitor"

#: What frps tells a visitor without detailed_errors_to_client.
SUMMARY = "register visitor conn error"


@attrs.frozen
class VisitorVerdict:
    """The decision on one NewVisitorConn: *error* ("" admits) is what
    frp says, *log* what the server logs, *proxy* the stcp proxy."""

    error: str = ""
    log: str = ""
    proxy: object = None


def check_visitor(registry, message, now: float, skew: float, sign_ok=None):
    """
    The verdict on *message* (a NewVisitorConn) against *registry* at
    time *now*; *sign_ok* is the signature check's result when it was
    already made (the throttle makes it), else it is made here.
    """
    name = message.proxy_name
    control = registry.controls.get(message.run_id) if message.run_id else None
    if control is None or control.closed:
        text = f"no client control found for run id [{message.run_id}]"
        return VisitorVerdict(text, text)
    proxy = registry.proxies.get(name)
    if proxy is None or getattr(proxy, "type", "") != "stcp":
        text = f"custom listener for [{name}] doesn't exist"
        return VisitorVerdict(text, text)
    if sign_ok is None:
        sign_ok = sign_key_matches(proxy, message)
    if not sign_ok:
        text = f"visitor connection of [{name}] auth failed"
        return VisitorVerdict(text, f"{text} (wrong sk)")
    problem = timestamp_skew_error(message.timestamp, now, skew)
    if problem is not None:
        text = f"visitor connection of [{name}] auth failed"
        return VisitorVerdict(text, f"{text}: {problem}")
    if not proxy.user_allowed(control.user):
        text = f"visitor connection of [{name}] user [{control.user}] not allowed"
        return VisitorVerdict(text, text)
    return VisitorVerdict(proxy=proxy)


def sign_key_matches(proxy, message) -> bool:
    """Whether *message*'s sign_key is *proxy*'s sk signed at its
    timestamp (a constant-time comparison)."""
    return check_privilege_key(proxy.sk, message.timestamp, message.sign_key)


class VisitorAdmission:
    """Decides one visitor connection (a
    :class:`~labrelay.server.connection.ServerConnection`) and acts on it."""

    _log = Logger()

    def __init__(self, context, connection, message):
        self.context = context
        self.connection = connection
        self.message = message

    def start(self) -> None:
        connection, message = self.connection, self.message
        connection.ignore_input()  # until decided
        registry = self.context.registry
        control = registry.controls.get(message.run_id) if message.run_id else None
        if control is None or control.closed:
            # no secret to guess here (a run_id is 64 random bits): at once
            self._refuse(check_visitor(registry, message, 0, 0))
            return

        def verify() -> bool:
            proxy = registry.proxies.get(message.proxy_name)
            if proxy is None or getattr(proxy, "type", "") != "stcp":
                return False
            return sign_key_matches(proxy, message)

        d = self.context.throttle.check(
            REALM, connection.source, message.proxy_name, verify
        )
        d.addCallback(self._checked)
        d.addErrback(lambda f: self._log.failure("checking a visitor connection", f))

    def _checked(self, checked) -> None:
        connection, message = self.connection, self.message
        if not connection.alive:
            return
        config = self.context.config
        if checked.outcome == REFUSED:
            verdict = VisitorVerdict(
                f"visitor connection of [{message.proxy_name}] auth failed",
                f"visitor connection of [{message.proxy_name}] refused without "
                f"checking it: too many attempts from {checked.source} waiting",
            )
        else:
            verdict = check_visitor(
                self.context.registry,
                message,
                self.context.clock.seconds(),
                config.auth_timestamp_skew,
                sign_ok=checked.outcome == PASS,
            )
            if checked.outcome != PASS:
                verdict = attrs.evolve(
                    verdict,
                    log=f"{verdict.log}; failure {checked.failures} in a row "
                    f"from {checked.source}, answered after {checked.delay:g}s",
                )
        if verdict.proxy is not None:
            room = verdict.proxy.visitor_room_error(connection.source)
            if room is not None:
                verdict = VisitorVerdict(room, room)
        if verdict.proxy is None:
            self._refuse(verdict)
            return
        connection.send(messages.NewVisitorConnResp(proxy_name=message.proxy_name))
        self._log.info(
            "{peer}: visitor connection to proxy [{name}] admitted",
            peer=connection.peer,
            name=message.proxy_name,
        )
        connection.become_visitor(verdict.proxy)
        verdict.proxy.start_visitor(
            connection, message.use_encryption, message.use_compression
        )

    def _refuse(self, verdict) -> None:
        connection, message = self.connection, self.message
        self._log.warn(
            "{peer}: register visitor conn error: {error}",
            peer=connection.peer,
            error=verdict.log,
        )
        error = verdict.error
        if not self.context.config.detailed_errors_to_client:
            error = SUMMARY
        connection.send(
            messages.NewVisitorConnResp(proxy_name=message.proxy_name, error=error)
        )
        connection.transport.loseConnection()
