# -*- test-case-name: tests.unit.test_stcp,tests.integration.test_stcp -*-
"""
``type = stcp`` proxies (secret TCP): no public port at all.  A proxy is
only a name in the registry with its secret key ``sk`` and its
``allow_users``; its users are *visitor connections*, frp connections
whose first message is NewVisitorConn (:mod:`labrelay.server.visitor`
admits them).  Each admitted visitor connection is joined to one of the
owner's work connections like a tcp user connection, except that the
visitor's side carries its own payload codec keyed by ``sk`` (frp's
protocol §8: the visitor chooses encryption and compression in its
NewVisitorConn; the owner's work connection keeps the proxy's own flags,
keyed by the owner's token).

Bounds: at most :data:`MAX_VISITORS` visitor connections are joined to
one proxy at a time, and at most :data:`MAX_VISITORS_PER_SOURCE` of them
from one source address; a visitor beyond either is refused.
"""

from twisted.logger import Logger

from ..errors import ProxyError
from ..kernel_splice import make_splice
from ..peers import host_port
from ..protocol.codec import PayloadCodec
from ..throttle import source_group
from .proxy_base import ProxyBase
from .worklink import start_work_link

#: Visitor connections one stcp proxy carries at a time.
MAX_VISITORS = 256
#: Visitor connections of one stcp proxy from one source at a time.
MAX_VISITORS_PER_SOURCE = 32


def allowed_users(owner_user: str, allow_users) -> tuple:
    """Who may visit: *allow_users* as written, or (empty) the owner's
    own user only, as frp."""
    users = tuple(u for u in (allow_users or ()) if isinstance(u, str))
    return users or (owner_user,)


class StcpProxy(ProxyBase):
    type = "stcp"
    _log = Logger()

    def __init__(self, context, control, message):
        super().__init__(context, control, message)
        self.sk = message.sk or ""
        self.allow_users = allowed_users(control.user, message.allow_users)
        self._sources = {}  # source group -> live visitor connections

    def start(self) -> str:
        if not self.sk:
            raise ProxyError("an stcp proxy needs a secret key (sk)")
        return ""

    def user_allowed(self, user: str) -> bool:
        return "*" in self.allow_users or user in self.allow_users

    def visitor_room_error(self, source: str):
        """Why one more visitor connection from *source* is refused, or
        None."""
        if sum(self._sources.values()) >= MAX_VISITORS:
            return f"proxy [{self.name}] carries its {MAX_VISITORS} visitor connections"
        if self._sources.get(source_group(source), 0) >= MAX_VISITORS_PER_SOURCE:
            return (
                f"proxy [{self.name}] carries {MAX_VISITORS_PER_SOURCE} visitor "
                f"connections from {source_group(source)}"
            )
        return None

    def start_visitor(self, visitor, use_encryption: bool, use_compression: bool):
        """Join the admitted *visitor* connection to a work connection."""
        group = source_group(visitor.source)
        self._sources[group] = self._sources.get(group, 0) + 1
        self.connections.add(visitor)

        def ready(work):
            self._join(visitor, work, use_encryption, use_compression)

        visitor.on_visitor_end(lambda: self._visitor_ended(visitor, group))
        self.get_work_connection(visitor, ready)

    def _visitor_ended(self, visitor, group: str) -> None:
        self.connections.discard(visitor)
        left = self._sources.get(group, 0) - 1
        if left > 0:
            self._sources[group] = left
        else:
            self._sources.pop(group, None)

    def _join(self, visitor, work, use_encryption, use_compression):
        link = start_work_link(self, work, src=host_port(visitor.transport.getPeer()))
        visitor_codec = None
        if use_encryption or use_compression:
            visitor_codec = PayloadCodec(self.sk, use_encryption, use_compression)
        splice = make_splice(
            visitor,
            work,
            a_codec=visitor_codec,
            b_codec=link.codec,
            on_close=self.sink_closed,
            description=f"proxy [{self.name}] visitor {visitor.peer}",
        )
        self.sink_opened(splice)
        splice.start(
            a_pending=visitor.take_early_data(), b_pending=work.take_early_data()
        )

    def close(self) -> None:
        """Nothing listens: a closed proxy is only gone from the registry
        (visitor connections already joined carry on, as tcp users do)."""
