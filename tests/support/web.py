"""
HTTP clients for the two local web APIs (the server's dashboard, the
client's admin API) on 127.0.0.1: a twisted.web Agent whose connections
close with the test, optionally trusting a test CA, and a blocking
``http.client`` request run in a thread, which can send any ``Host``.
"""

import base64
import http.client
import json

from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from .harness import within


@implementer(IPolicyForHTTPS)
class _TrustPolicy:
    def __init__(self, ca_pem):
        self._trust = Certificate.loadPEM(ca_pem)

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS("localhost", trustRoot=self._trust)


class Http:
    """An HTTP client whose connections are closed when the test ends."""

    def __init__(self, testcase, ca_pem=None):
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.retryAutomatically = False
        kwargs = {"pool": self.pool}
        if ca_pem is not None:
            kwargs["contextFactory"] = _TrustPolicy(ca_pem)
        self.agent = Agent(reactor, **kwargs)
        testcase.addCleanup(self.pool.closeCachedConnections)

    async def get(self, url, user=None, password=None, method=b"GET"):
        """(status, headers, body) of one request."""
        headers = Headers()
        if user is not None:
            raw = base64.b64encode(f"{user}:{password}".encode())
            headers.addRawHeader(b"authorization", b"Basic " + raw)
        response = await within(self.agent.request(method, url.encode(), headers))
        body = await within(readBody(response))
        return response.code, response.headers, body

    async def json(self, url, **kw):
        code, headers, body = await self.get(url, **kw)
        if code != 200:
            raise AssertionError(f"{url}: {code} {body!r}")
        return json.loads(body)


def http_call(
    port, method, path, body=None, user=None, password=None, headers=None, host=None
):
    """One blocking HTTP request to 127.0.0.1:*port*: (status, headers,
    body).  Run it with deferToThread.  *host* replaces the ``Host``
    header (``""``: none at all)."""
    headers = dict(headers or {})
    if user is not None:
        pair = f"{user}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if host is None:
            connection.request(method, path, body=body, headers=headers)
        else:
            connection.putrequest(method, path, skip_host=True)
            if host:
                connection.putheader("Host", host)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
        response = connection.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


def request(
    port, method, path, body=None, user=None, password=None, headers=None, host=None
):
    """:func:`http_call` in a thread, bounded."""
    return within(
        deferToThread(
            http_call, port, method, path, body, user, password, headers, host
        )
    )
