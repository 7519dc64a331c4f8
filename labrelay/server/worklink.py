# -*- test-case-name: tests.integration.test_tunnel,tests.integration.test_vhost_reuse -*-
"""
Starting a work connection for one user: :func:`start_work_link` sends
StartWorkConn on it and sets up the proxy's payload codec, and
:class:`WorkLink` is the started connection with that codec.

Every proxy type goes through here: a tcp user connection is spliced to
the link at once (:func:`~labrelay.server.proxy_base.join_user_to_work`),
an HTTP exchange writes its request onto it and may keep it idle for the
proxy's next request (the codec's streams continue on that connection, so
the link, not the exchange, owns the codec).
"""

from ..protocol import messages
from ..protocol.codec import PayloadCodec


class WorkLink:
    """A started work connection and its payload codec (None: plain), which
    lives as long as the connection."""

    __slots__ = ("work", "codec")

    def __init__(self, work, codec):
        self.work = work
        self.codec = codec


def start_work_link(proxy, work, *, src=("", 0), dst=("", 0)) -> WorkLink:
    """
    Send StartWorkConn for *proxy* on *work* (the user's address *src*, the
    address the user reached *dst*) and return it as a :class:`WorkLink`
    with *proxy*'s codec.
    """
    src_addr, src_port = src
    dst_addr, dst_port = dst
    work.send(
        messages.StartWorkConn(
            proxy_name=proxy.name,
            src_addr=src_addr,
            src_port=src_port,
            dst_addr=dst_addr,
            dst_port=dst_port,
        )
    )
    codec = None
    if proxy.use_encryption or proxy.use_compression:
        # The token of the client's login (a reload may have changed the
        # server's since).
        codec = PayloadCodec(
            proxy.control.token, proxy.use_encryption, proxy.use_compression
        )
    return WorkLink(work, codec)
