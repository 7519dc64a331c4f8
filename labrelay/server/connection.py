"""
One frp connection accepted by the server: a TCP connection, or a yamux
stream when tcp_mux is on.

The first message decides what it is: ``Login`` makes it the control
connection of a new :class:`~labrelay.server.control.ControlSession`,
``NewWorkConn`` makes it a work connection waiting in its client's pool,
``NewVisitorConn`` a visitor connection of an stcp proxy
(:mod:`labrelay.server.visitor`).
Whether either is allowed is the
:class:`~labrelay.server.auth.Authenticator`'s verdict; this protocol acts
on it (answers a refusal, replaces a control with the same run_id), and
otherwise only frames, encrypts and decrypts; the other decisions live in
the control session, the pool and the proxies.

Until its first message has been accepted a connection holds an
*admission* (``labrelay.server.guard``): it counts as unauthenticated
against its source address, and the admission's deadline bounds the whole
time until then (``unauthenticated_timeout``: TLS handshake, first byte,
first message, a delayed answer).  Under tcp_mux every stream shares its
session's admission, so the session stops counting, and its deadline is
cleared, once one stream has logged in or joined a pool; the session is
told (:meth:`ServerSession.stream_authenticated
<labrelay.server.bind_port.ServerSession.stream_authenticated>`).  From
then on each of its streams has ``first_message_timeout`` for its first
message.  A first message the server refuses, or answers later (a
delayed wrong-token answer), ends the input: nothing after it is read, so
a peer cannot pipeline guesses on one connection.
"""

from twisted.logger import Logger
from zope.interface import implementer

from .. import FRP_VERSION
from ..errors import ProtocolError
from ..interfaces import IAdmissionHolder
from ..peers import describe, host_port, set_keepalive
from ..protocol import messages
from ..protocol.crypto import StreamDecryptor, StreamEncryptor
from ..protocol.framing import MessageParser, encode_message
from ..relay import RelayedProtocol, set_no_delay
from ..writethrough import write_now
from .auth import SESSION_CAP
from .control import ControlSession
from .mismatch import SERVER_MUX_OFF, opened_yamux_stream, yamux_refusal
from .proxy_base import WaitsForWork
from .visitor import VisitorAdmission

#: Seconds a new connection (or yamux session) has to send its first message
#: (frp: 10 s); this bound also covers a TLS handshake.
FIRST_MESSAGE_TIMEOUT = 10

#: Bytes a pooled work connection may send before it is started.  frpc
#: sends nothing then; anything more is a misbehaving peer.
MAX_EARLY_WORK_BYTES = 256 * 1024


@implementer(IAdmissionHolder)
class ServerConnection(WaitsForWork, RelayedProtocol):
    _log = Logger()

    def __init__(self, context, admission=None, session=None):
        self.context = context
        self.admission = admission  # labrelay.server.guard.Admission
        self.session = session  # the ServerSession of a yamux stream
        self.first_message = None  # the first message's class
        self._working = False  # logged in or joined a pool
        self.peer = "?"
        self.source = ""  # the peer's address, without the port
        self.control = None  # ControlSession, when this is a control
        self.work_owner = None  # ControlSession, when this is a work connection
        self.visiting = None  # the StcpProxy of an admitted visitor connection
        self._visitor_end = None
        self._parser = MessageParser()
        self._encryptor = None
        self._decryptor = None
        self._first_timer = None
        self._early = []
        self._early_size = 0
        self._gone = False
        self._ignoring = False  # the first message was refused

    # Twisted protocol.

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        try:
            self.source = host_port(self.transport.getPeer())[0]
        except Exception:
            self.source = ""
        self.context.connections.add(self)
        config = self.context.config
        if not config.tcp_mux:
            set_keepalive(self.transport, config.tcp_keepalive)
        if self.admission is None or self.admission.released:
            self.start_first_message_timer()

    def start_first_message_timer(self) -> None:
        """Give this connection first_message_timeout for its first
        message (once no deadline covers it)."""
        if self._first_timer is None and self.first_message is None and not self._gone:
            self._first_timer = self.context.clock.callLater(
                self.context.first_message_timeout(), self._first_message_timeout
            )

    def _first_message_timeout(self):
        self._first_timer = None
        self._log.warn(
            "{peer}: no frp message within {seconds}s; closing",
            peer=self.peer,
            seconds=self.context.first_message_timeout(),
        )
        self.transport.abortConnection()

    def unauthenticated_timeout(self) -> None:
        """The admission's deadline passed: say why (the sniffer closes
        the connection)."""
        seconds = self.admission.timeout
        self.context.refusals.deadline_passed(
            self.peer,
            (
                f"no frp message within {seconds}s"
                if self.first_message is None
                else f"not authenticated within {seconds}s (unauthenticated_timeout)"
            ),
        )

    def adopt_admission(self, admission) -> None:
        """This connection counts as unauthenticated until
        :meth:`authenticated` (called by the sniffer, without tcp_mux)."""
        self.admission = admission

    def authenticated(self) -> None:
        """The first message was accepted: stop counting this connection
        (under tcp_mux: its whole session) as unauthenticated."""
        if self.admission is not None:
            self.admission.release()
        if self.session is not None and not self._working:
            self._working = True
            self.session.stream_authenticated(
                login=self.first_message is messages.Login
            )

    def ignore_input(self) -> None:
        """The first message was refused, or is being checked: read
        nothing more (until :meth:`resume_input`)."""
        self._ignoring = True

    def resume_input(self) -> None:
        """The first message was accepted after all: read on.  frpc sends
        nothing more before the answer to its first message, so nothing
        was dropped meanwhile."""
        self._ignoring = False

    def data_before_splice(self, data):
        if self._ignoring or self._gone:
            # refused (a visitor, a tcp_mux mismatch) or lost: over TLS the
            # peer's bytes keep coming after our close, and are dropped
            return
        if self.work_owner is not None or self.visiting is not None:
            self._keep_early(data)
            return
        if self._decryptor is not None:
            data = self._decryptor.decrypt(data)
        elif self.first_message is None and not self._parser.buffered:
            if self._refuse_yamux(data):
                return
        self._parser.feed(data)
        try:
            while self.work_owner is None and not self._gone and not self._ignoring:
                message = self._parser.next_message()
                if message is None:
                    break
                self._dispatch(message)
        except ProtocolError as e:
            self.protocol_error(str(e))

    def _refuse_yamux(self, data: bytes) -> bool:
        """A yamux client on a server without tcp_mux: say so and close."""
        if self.context.config.tcp_mux:
            return False
        stream_id = opened_yamux_stream(data)
        if stream_id is None:
            return False
        self._log.warn("{peer}: {error}", peer=self.peer, error=SERVER_MUX_OFF)
        self.transport.write(yamux_refusal(stream_id, SERVER_MUX_OFF))
        self.transport.loseConnection()
        self._gone = True
        return True

    def eof_before_splice(self):
        self.transport.loseConnection()

    def connection_ended(self, reason):
        self._gone = True
        self.context.connections.remove(self)
        if self._working and self.session is not None:
            self.session.stream_ended()
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None
        if self.control is not None:
            self.control.connection_lost(reason)
        elif self.work_owner is not None and self.sink is None:
            self.work_owner.pool.discard(self)
        if self.visiting is not None:
            self.stop_waiting()
            if self._visitor_end is not None:
                self._visitor_end()

    # Sending.

    def send(self, message) -> None:
        data = encode_message(message)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        write_now(self.transport, data)

    def start_encryption(self, key: bytes) -> None:
        """From now on both directions are AES-CFB (after LoginResp)."""
        self._encryptor = StreamEncryptor(key)
        self._decryptor = StreamDecryptor(key)
        rest = self._parser.take_rest()
        self._parser.feed(self._decryptor.decrypt(rest))

    def protocol_error(self, text: str) -> None:
        role = (
            "control"
            if self.control
            else "work connection"
            if self.work_owner
            else "connection"
        )
        self._log.warn(
            "{peer}: closing {role}: {error}", peer=self.peer, role=role, error=text
        )
        self.transport.abortConnection()

    # Dispatch.

    def _dispatch(self, message) -> None:
        if self.control is not None:
            self.control.handle(message)
            return
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None
        if self.first_message is None:
            self.first_message = type(message)
        handler = self._FIRST_MESSAGE_HANDLERS.get(type(message))
        if handler is None:
            raise ProtocolError(
                f"first message is {message.name}, expected Login or NewWorkConn"
            )
        getattr(self, handler)(message)

    #: first message class -> the method handling it (by name, so that a
    #: method patched or overridden later is the one called)
    _FIRST_MESSAGE_HANDLERS = {
        messages.Login: "_on_login",
        messages.NewWorkConn: "_on_new_work_conn",
        messages.NewVisitorConn: "_on_new_visitor_conn",
    }

    def _on_login(self, login) -> None:
        self.ignore_input()  # until the Authenticator has decided
        d = self.context.authenticator.verify_login(self, login)
        d.addCallback(self._login_verdict, login)
        d.addErrback(lambda f: self._log.failure("checking a login", f))

    def _login_verdict(self, verdict, login) -> None:
        context = self.context
        if not verdict.accepted:
            context.refusals.refused(self.peer, verdict)
            if self.alive:
                self.send(messages.LoginResp(version=FRP_VERSION, error=verdict.client))
                self.transport.loseConnection()
            return
        self.resume_input()
        old = context.registry.controls.get(verdict.run_id)
        if old is not None:
            old.close("replaced by a new login with the same run_id")
        self.authenticated()
        control = ControlSession(context, self, login, verdict.run_id)
        context.registry.add_control(control)
        control.start()

    def _on_new_work_conn(self, message) -> None:
        self.ignore_input()  # until the Authenticator has decided
        d = self.context.authenticator.verify_work_conn(self, message)
        d.addCallback(self._work_conn_verdict)
        d.addErrback(lambda f: self._log.failure("checking a work connection", f))

    def _work_conn_verdict(self, verdict) -> None:
        if not verdict.accepted:
            self.context.refusals.refused(self.peer, verdict)
            if self.alive:
                self.send(messages.StartWorkConn(error=verdict.client))
                self.transport.loseConnection()
            if verdict.reason == SESSION_CAP:
                self.session.close()
            return
        self.resume_input()
        self.authenticated()
        self.context.registry.controls[verdict.run_id].accept_work_conn(self)

    def _on_new_visitor_conn(self, message) -> None:
        VisitorAdmission(self.context, self, message).start()

    def become_visitor(self, proxy) -> None:
        """Admitted as a visitor connection of *proxy* (an StcpProxy): what
        follows is payload, kept until the splice starts."""
        self.resume_input()
        self.authenticated()
        self.visiting = proxy
        self.transport.pauseProducing()
        rest = self._parser.take_rest()
        if rest:
            self._keep_early(rest)

    def on_visitor_end(self, callback) -> None:
        """Call *callback* once this visitor connection has ended."""
        self._visitor_end = callback

    @property
    def ended(self) -> bool:
        return self._gone

    # Work connection life.

    def become_work_connection(self, owner) -> None:
        self.work_owner = owner
        rest = self._parser.take_rest()
        if rest:
            self._keep_early(rest)

    def _keep_early(self, data: bytes) -> None:
        self._early.append(data)
        self._early_size += len(data)
        if self._early_size > MAX_EARLY_WORK_BYTES:
            self.protocol_error("idle work connection sent data before StartWorkConn")

    def take_early_data(self) -> bytes:
        data = b"".join(self._early)
        self._early = []
        return data

    def discard(self, why: str) -> None:
        """Close this idle work connection (the pool does not want it)."""
        self._log.debug(
            "{peer}: closing work connection: {why}", peer=self.peer, why=why
        )
        self.transport.loseConnection()

    @property
    def alive(self) -> bool:
        return not self._gone
