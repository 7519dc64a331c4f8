"""
The client's control connection: Login, proxy registration, heartbeats,
and answering ReqWorkConn.

:class:`ClientControl` frames, encrypts and decrypts; what to register and
how to open work connections is asked of its :class:`RelayClient`.
"""

import platform
import time

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from .. import FRP_VERSION
from ..errors import LoginRefused, ProtocolError
from ..peers import describe, set_keepalive
from ..protocol import messages
from ..protocol.auth import privilege_key
from ..protocol.crypto import StreamDecryptor, StreamEncryptor, derive_key
from ..protocol.framing import MessageParser, encode_message
from ..relay import set_no_delay
from ..tls import TLSVerificationError, describe_tls_error
from ..writethrough import write_now

#: Seconds to wait for LoginResp (frp: 10 s).
LOGIN_RESPONSE_TIMEOUT = 10

_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def go_os_arch():
    """Go's GOOS and GOARCH names for this machine, as frpc reports them."""
    machine = platform.machine().lower()
    return platform.system().lower(), _GO_ARCH.get(machine, machine)


def _tls_failure(reason):
    """
    One line saying why TLS failed, when that is why the link was lost
    (under tcp_mux the stream's loss has the session's as its cause), or
    None.
    """
    error = reason.value
    for _ in range(4):  # a short chain; never loop on a cyclic one
        if error is None:
            break
        if isinstance(error, (SSL.Error, TLSVerificationError)):
            return describe_tls_error(error)
        error = error.__cause__
    return None


class ClientControl(Protocol):
    _log = Logger()

    def __init__(self, client, wall_clock=time.time):
        self.client = client
        self.clock = client.clock
        self._wall_clock = wall_clock
        self._parser = MessageParser()
        self._encryptor = None
        self._decryptor = None
        self.logged_in = Deferred()
        self._login_timer = None
        self._ping_call = None
        self._last_pong = None
        self._gone = False
        self.login_ok = False
        self.run_id = ""
        self.peer = "?"

    # Twisted protocol.

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        config = self.client.config
        set_keepalive(self.transport, config.dial_server_keepalive)
        now = int(self._wall_clock())
        os_name, arch = go_os_arch()
        self._send(
            messages.Login(
                version=FRP_VERSION,
                os=os_name,
                arch=arch,
                user=config.user,
                privilege_key=privilege_key(config.token, now),
                timestamp=now,
                run_id=self.client.run_id,
                metas=dict(config.metas) or None,
                pool_count=config.pool_count,
            )
        )
        self._login_timer = self.clock.callLater(
            LOGIN_RESPONSE_TIMEOUT, self._login_timeout
        )

    def dataReceived(self, data):
        if self._gone:
            return
        if self._decryptor is not None:
            data = self._decryptor.decrypt(data)
        self._parser.feed(data)
        try:
            while not self._gone:
                message = self._parser.next_message()
                if message is None:
                    break
                self._dispatch(message)
        except ProtocolError as e:
            self._log.error(
                "control connection to {peer}: {error}; reconnecting",
                peer=self.peer,
                error=e,
            )
            self._fail_login(e)
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self._gone = True
        for call in (self._login_timer, self._ping_call):
            if call is not None and call.active():
                call.cancel()
        self._login_timer = self._ping_call = None
        tls_error = _tls_failure(reason)
        if tls_error is not None:
            self._fail_login(LoginRefused(f"TLS with the server failed: {tls_error}"))
        else:
            self._fail_login(
                LoginRefused(
                    "the server closed the connection before answering the Login "
                    "(is tcp_mux the same on both sides?)"
                )
            )
        self.client.control_lost(self, reason)

    # Sending.

    def _send(self, message) -> None:
        data = encode_message(message)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        write_now(self.transport, data)

    def send(self, message) -> None:
        if not self._gone:
            self._send(message)

    # Login.

    def _login_timeout(self):
        self._login_timer = None
        self._fail_login(LoginRefused(f"no LoginResp within {LOGIN_RESPONSE_TIMEOUT}s"))
        self.transport.abortConnection()

    def _fail_login(self, error) -> None:
        if not self.logged_in.called:
            self.logged_in.errback(error)

    def _dispatch(self, message) -> None:
        if not self.logged_in.called:
            if not isinstance(message, messages.LoginResp):
                raise ProtocolError(f"expected LoginResp, got {message.name}")
            self._login_response(message)
            return
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            self._log.debug(
                "ignoring {name} on the control connection", name=message.name
            )
            return
        getattr(self, handler)(message)

    #: message class -> the method handling it once logged in (by name, so
    #: that a method patched or overridden later is the one called)
    _HANDLERS = {
        messages.ReqWorkConn: "_on_req_work_conn",
        messages.NewProxyResp: "_on_new_proxy_resp",
        messages.Pong: "_on_pong",
    }

    def _on_req_work_conn(self, message) -> None:
        self.client.open_work_connection()

    def _on_new_proxy_resp(self, message) -> None:
        self.client.proxy_response(message)

    def _on_pong(self, message) -> None:
        if message.error:
            self._log.error("server refused a heartbeat: {error}", error=message.error)
            self.transport.loseConnection()
            return
        self._last_pong = self.clock.seconds()

    def _login_response(self, message) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if message.error:
            self._gone = True
            self.logged_in.errback(LoginRefused(message.error))
            self.transport.loseConnection()
            return
        self.run_id = message.run_id
        key = derive_key(self.client.config.token)
        self._encryptor = StreamEncryptor(key)
        self._decryptor = StreamDecryptor(key)
        rest = self._parser.take_rest()
        self._parser.feed(self._decryptor.decrypt(rest))
        self._last_pong = self.clock.seconds()
        self.login_ok = True
        self.logged_in.callback(self)
        self._start_heartbeats()

    # Heartbeats.

    def _start_heartbeats(self) -> None:
        interval = self.client.config.heartbeat_interval
        if interval > 0:
            self._heartbeat()

    def _heartbeat(self) -> None:
        self._ping_call = None
        if self._gone:
            return
        config = self.client.config
        timeout = config.heartbeat_timeout
        if timeout > 0 and self.clock.seconds() - self._last_pong > timeout:
            self._log.warn(
                "no heartbeat answer from {peer} for {seconds}s; reconnecting",
                peer=self.peer,
                seconds=timeout,
            )
            self.transport.abortConnection()
            return
        ping = messages.Ping()
        if config.authenticate_heartbeats:
            now = int(self._wall_clock())
            ping = messages.Ping(
                privilege_key=privilege_key(config.token, now), timestamp=now
            )
        self.send(ping)
        self._ping_call = self.clock.callLater(
            config.heartbeat_interval, self._heartbeat
        )
