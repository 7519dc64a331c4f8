"""
The HTTPS vhost and the tcpmux port in this process: a labrelay server
with ``vhost_https_port`` and ``tcpmux_httpconnect_port`` on port 0, TLS
backends with test certificates (:mod:`.certs`), real ClientHellos made by
Python's ``ssl`` without a socket, and raw users that record what they
receive and when they are closed.
"""

import ssl

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from labrelay.config import parse_server_config
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

from . import certs
from .harness import TOKEN, within

SUBDOMAIN_HOST = "lab.example.test"


def client_hello(server_name=None, *, alpn=()) -> bytes:
    """The ClientHello Python's TLS stack sends to *server_name* (None:
    no SNI), made without a socket."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class NamedRelay:
    """A labrelay server with the HTTPS vhost and the tcpmux port."""

    def __init__(self, testcase, extra="", subdomain_host=SUBDOMAIN_HOST):
        text = (
            "[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\nvhost_https_port = 8443\n"
            "tcpmux_httpconnect_port = 1337\n"
            f"subdomain_host = {subdomain_host}\n" + extra
        )
        self.config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(
            self.config,
            reactor,
            server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
            https_listen="tcp:0:interface=127.0.0.1",
            tcpmux_listen="tcp:0:interface=127.0.0.1",
        )
        self.https = self.server.named_port("https")
        self.tcpmux = self.server.named_port("tcpmux")
        self.testcase = testcase

    async def start(self):
        self.server.startService()
        self.testcase.addCleanup(self.stop)
        await within(self.server.when_ready())
        self.port = (await within(self.server.when_listening())).getHost().port
        https = await within(self.server.when_named_port_listening("https"))
        self.https_port = https.getHost().port
        tcpmux = await within(self.server.when_named_port_listening("tcpmux"))
        self.tcpmux_port = tcpmux.getHost().port
        return self

    def stop(self):
        if self.server.running:
            return self.server.stopService()


def named_proxy(name, kind, local_port, **options):
    """An frpc.ini section of type *kind* (https, tcpmux)."""
    lines = [f"[{name}]", f"type = {kind}", f"local_port = {local_port}"]
    lines += [f"{key} = {value}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def tls_backend(testcase, names, body=b"tensorboard\n"):
    """An HTTPS site with a certificate for *names* (signed by the test
    CA); returns its port."""
    pair = certs.server_certificate(names)
    options = PrivateCertificate.loadPEM(pair.cert + pair.key).options()
    root = Resource()
    root.putChild(b"", Data(body, "text/plain"))
    port = reactor.listenSSL(0, Site(root), options, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


def ca_file(testcase) -> str:
    """The test CA's certificate in a file (for curl --cacert)."""
    return certs.write_pem(
        testcase.mktemp(), "ca.crt", certs.certificate_authority().cert
    )


class RawUser(Protocol):
    """Sends what it is told; records what it receives and its close."""

    def __init__(self):
        self.received = bytearray()
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(bytes(self.received))


async def raw_user(testcase, port):
    from twisted.internet.endpoints import TCP4ClientEndpoint

    user = RawUser()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await within(endpoint.connect(Factory.forProtocol(lambda: user)))

    def close():
        if user.transport.connected:
            user.transport.abortConnection()
        return within(user.closed)

    testcase.addCleanup(close)
    return user
