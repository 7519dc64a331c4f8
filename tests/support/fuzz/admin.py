"""
The client's admin API as a fuzz target (``--target admin``):
any bytes on an admin connection are answered or closed without an error,
and nothing changes state (reload, stop, a rewritten config file) unless
the request that did it passed the policy, checked here independently of
:mod:`labrelay.localweb`: a local ``Host`` with the API's port, no foreign
``Origin`` or cross-site ``Sec-Fetch-Site``, the route's own method, the
configured credentials.  No answer ever carries the token or what a
``{{ .Envs.X }}`` template in the file would render to.
"""

import atexit
import base64
import os
import re
import shutil
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from labrelay.client.admin import AdminResource
from labrelay.config import parse_client_config
from labrelay.web import AUTH_FAIL_DELAY, QuietSite

from .core import Target, bound, chunked

PORT = 7400
USER, PASSWORD = "admin", "s3cret"
TOKEN = "fuzz-admin-token"
#: An environment variable the config file names in a template.
SECRET_VARIABLE = "LABRELAY_FUZZ_ADMIN_SECRET"
SECRET = "fuzz-env-secret-value"
CREDENTIALS = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
_STATUS = re.compile(rb"(?:\A|\n)HTTP/1\.[01] ([1-5][0-9][0-9]) ")
_LOCAL_HOST = re.compile(r"(localhost\.?|127\.0\.0\.1|\[::1\]):7400\Z", re.IGNORECASE)


def _request(method, path, host=f"127.0.0.1:{PORT}", body=b"", auth=False, extra=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
    if auth:
        head += f"Authorization: {CREDENTIALS}\r\n".encode()
    if body or method in ("POST", "PUT"):
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


_REQUESTS = (
    _request("GET", "/api/status"),
    _request("GET", "/healthz", host=f"localhost:{PORT}"),
    _request("POST", "/api/reload", auth=True),
    _request("GET", "/api/reload", auth=True),
    _request("GET", "/api/config", auth=True, host=f"[::1]:{PORT}"),
    _request(
        "PUT",
        "/api/config",
        body=b"[common]\nserver_port = 7001\n[p]\nlocal_port = 22\n",
        auth=True,
    ),
    _request("POST", "/api/stop", auth=True),
    _request("POST", "/api/stop", host=f"rebind.example:{PORT}", auth=True),
    _request("POST", "/api/stop", auth=True, extra=b"Origin: http://evil.example\r\n"),
    _request("POST", "/api/reload", auth=True, extra=b"Sec-Fetch-Site: cross-site\r\n"),
    _request(
        "PUT",
        "/api/config",
        body=b"user = {{ .Envs.%s }}\n" % SECRET_VARIABLE.encode(),
        auth=True,
        extra=b"Origin: http://127.0.0.1:7400\r\n",
    ),
)


class _Client:
    """What AdminResource needs of a RelayClient; records state changes."""

    def __init__(self, config, path):
        self.config = config
        self.config_path = path
        self.proxies = {}
        self.changes = []

    def reload(self):
        self.changes.append("reload")

    def stop_gracefully(self, exit_code=0):
        self.changes.append("stop")


def _content(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


class _Policed(AdminResource):
    """The admin resource, checking the policy (by this module's own rules)
    at every state change."""

    def _check(self, request, methods):
        def header(name):
            value = request.getHeader(name)
            return None if value is None else value.decode("latin-1")

        host = header(b"host") or ""
        bound(_LOCAL_HOST.match(host) is not None, f"state changed for Host {host!r}")
        origin = header(b"origin")
        bound(
            origin is None or origin.lower() == "http://" + host.lower(),
            f"state changed for Origin {origin!r}",
        )
        site = header(b"sec-fetch-site")
        bound(
            site is None or site.lower() in ("same-origin", "none"),
            f"state changed for Sec-Fetch-Site {site!r}",
        )
        bound(request.method in methods, f"state changed by {request.method!r}")
        config = self.client.config
        if config.admin_user or config.admin_pwd:
            # as twisted.web decodes them (it skips non-base64 bytes)
            bound(
                (request.getUser(), request.getPassword())
                == (USER.encode(), PASSWORD.encode()),
                "state changed without the credentials",
            )

    def _reload(self, request):
        config = self.client.config
        self._check(request, (b"POST", b"GET") if config.admin_pwd else (b"POST",))
        return super()._reload(request)

    def _put_config(self, request):
        before = _content(self.client.config_path)
        try:
            return super()._put_config(request)
        finally:
            if _content(self.client.config_path) != before:
                self._check(request, (b"PUT",))
                self.client.changes.append("config")

    def _stop(self, request):
        self._check(request, (b"POST",))
        return super()._stop(request)


class AdminTarget(Target):
    """
    One admin API connection (the real Site and AdminResource on a memory
    transport and a Clock, a stub client), with credentials configured or
    not by the input's length.
    """

    name = "admin"
    tokens = (
        b"\r\n",
        b"\r\n\r\n",
        b"Host: ",
        b"localhost:7400",
        b"127.0.0.1:7400",
        b"[::1]:7400",
        b"Origin: ",
        b"http://127.0.0.1:7400",
        b"Sec-Fetch-Site: ",
        b"same-origin",
        b"cross-site",
        b"Authorization: " + CREDENTIALS.encode(),
        b"POST ",
        b"PUT ",
        b"GET ",
        b"/api/reload",
        b"/api/stop",
        b"/api/config",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"{{ .Envs.",
        SECRET_VARIABLE.encode(),
        b" }}",
        b"HTTP/1.1",
        b"HTTP/1.0",
    )

    def __init__(self):
        self._directory = None

    def corpus(self):
        return list(_REQUESTS) + [b"".join(_REQUESTS[:4])]

    def _file(self, text):
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="labrelay-fuzz-admin-")
            atexit.register(shutil.rmtree, self._directory, True)
        path = os.path.join(self._directory, "frpc.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def run(self, data, cuts):
        os.environ[SECRET_VARIABLE] = SECRET
        with_auth = len(data) % 2 == 0
        text = (
            f"[common]\nserver_addr = 127.0.0.1\ntoken = {TOKEN}\n"
            f"user = {{{{ .Envs.{SECRET_VARIABLE} }}}}\n"
            f"admin_port = {PORT}\n"
            + (f"admin_user = {USER}\nadmin_pwd = {PASSWORD}\n" if with_auth else "")
            + "[ssh]\nlocal_port = 22\n"
        )
        config = parse_client_config(
            text.replace(f"{{{{ .Envs.{SECRET_VARIABLE} }}}}", "x")
        )
        client = _Client(config, self._file(text))
        clock = Clock()
        resource = _Policed(client, clock)
        site = QuietSite(resource, reactor=clock)
        wire = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", PORT),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        channel = site.buildProtocol(wire.getPeer())
        channel.makeConnection(wire)
        for piece in chunked(data, cuts):
            if wire.disconnecting:
                break
            channel.dataReceived(piece)
            clock.advance(AUTH_FAIL_DELAY)
        for _ in range(3):  # 401s, the stop, twisted.web's own timers
            clock.advance(AUTH_FAIL_DELAY + 1)
        closed = wire.disconnecting
        output = wire.value()
        channel.connectionLost(Failure(ConnectionDone()))
        resource.close()
        clock.advance(60 * 60 * 13)
        bound(
            clock.getDelayedCalls() == [],
            f"delayed calls left: {clock.getDelayedCalls()}",
        )
        for secret in (SECRET.encode(), TOKEN.encode(), PASSWORD.encode()):
            bound(secret not in output, f"an answer carried {secret!r}")
        shown = ",".join(sorted({s.decode() for s in _STATUS.findall(output)}))
        changes = ",".join(sorted(set(client.changes))) or "no change"
        return f"{shown or 'no response'}; {changes}; {'closed' if closed else 'open'}"


#: The admin API target (``tests.unit.test_admin_fuzz`` runs it too).
ADMIN = AdminTarget()
