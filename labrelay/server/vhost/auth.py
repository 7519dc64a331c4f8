# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.integration.test_guessing -*-
"""
Basic auth (``http_user``/``http_pwd``) on the vhost's front connection,
through the server's password throttle (:mod:`labrelay.throttle`): a
request with credentials is passed at once, or held (reading stops, the
connection's exchange slot holds an :class:`_AuthHeld`) until the throttle
decides; a wrong guess is answered 401 (407 to an absolute-form request)
after the throttle's delay.

:class:`BasicAuthMixin` is the part of
:class:`~labrelay.server.vhost.front.VhostConnection` that does this; it
uses the connection's ``respond``, ``gate``, ``pump`` and
``_on_request``.
"""

from ...throttle import PASS


class _AuthHeld:
    """Stands for the exchange while a request's credentials are held by
    the password throttle: it takes no body (the pump waits) and has no
    work connection."""

    accepts_body = False
    work = None

    def front_lost(self) -> None:
        """The user left while held: the throttle's answer is dropped."""


class BasicAuthMixin:
    """The Basic-auth checks of a front connection (see the module
    docstring)."""

    def _authorized(self, request, proxy, user, password, absolute) -> bool:
        """
        Whether *request* may go on to *proxy* now.  If not, it has been
        answered (401/407) or is held by the server's password throttle
        (:mod:`labrelay.throttle`): reading stops, and once it
        passes :meth:`_on_request` takes it up again.  A request without
        credentials is no guess: answered at once, not counted.
        """
        passed, self._auth_passed = self._auth_passed, None
        if (
            passed is not None and passed[0] is request and passed[1] is proxy
        ):  # let through, for this route
            return True
        if not (proxy.http_user or proxy.http_pwd):
            return True
        if not (user or password):
            self._unauthorized(absolute)
            return False
        verdicts = []
        decided = self.vhost.context.throttle.check(
            "vhost",
            self.client_ip,
            proxy.name,
            lambda: proxy.check_auth(user, password),
        )
        decided.addCallback(verdicts.append)
        if verdicts:  # only a pass is decided at once
            return True
        held = self._exchange = _AuthHeld()
        self.gate.pause("auth")
        decided.addCallback(
            lambda _: self._auth_decided(verdicts[0], held, request, proxy, absolute)
        )
        decided.addErrback(
            lambda f: self._log.failure("vhost: checking credentials", f)
        )
        return False

    def _auth_decided(self, verdict, held, request, proxy, absolute) -> None:
        if self._exchange is not held or self._closing:
            return  # the user left meanwhile
        self._exchange = None
        self.gate.resume("auth")
        if verdict.outcome == PASS:
            self._auth_passed = (request, proxy)
            self._on_request(request)
        else:
            self._auth_refused(verdict, proxy, absolute)
        self.pump()

    def _auth_refused(self, verdict, proxy, absolute) -> None:
        self.vhost.context.log_auth_failure(
            self.peer, f"wrong credentials for proxy [{proxy.name}]", verdict
        )
        self._unauthorized(absolute)

    def _unauthorized(self, absolute) -> None:
        if absolute:
            self.respond(
                407,
                b"Unauthorized\n",
                extra=[(b"Proxy-Authenticate", b'Basic realm="Restricted"')],
            )
        else:
            self.respond(
                401,
                b"Unauthorized\n",
                extra=[(b"WWW-Authenticate", b'Basic realm="Restricted"')],
            )
