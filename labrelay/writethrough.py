"""
Sending relayed bytes at once instead of on the next reactor turn.

A Twisted TCP transport's ``write`` only queues bytes and asks the reactor
to call ``doWrite`` on its next iteration, so every relayed chunk costs an
extra turn of the reactor (50-70 µs of round-trip time per hop, measured).
When nothing is queued, :func:`write_now` hands the bytes straight to the
socket and queues only what the kernel did not take; everything else
(TLS, yamux streams, a transport with queued bytes, a closing one) goes
through the ordinary ``write``.  This reads Twisted's buffer attributes,
so it is confined to :func:`socket_is_idle` and checked by its tests.
"""

import errno

from twisted.internet import tcp

_TCP_TYPES = (tcp.Server, tcp.Client)
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ENOBUFS)


def socket_is_idle(transport) -> bool:
    """
    Whether *transport* is an open plain TCP transport holding no bytes
    to send: its socket may be written to directly (here, and by
    :mod:`labrelay.kernel_splice` when it takes a socket over).
    """
    return (
        type(transport) in _TCP_TYPES
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._writeDisconnecting
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    )


def write_now(transport, data: bytes) -> None:
    """Write *data* to *transport*, to the socket at once when possible."""
    if socket_is_idle(transport):
        try:
            sent = transport.socket.send(data)
        except OSError as e:
            if e.errno not in _RETRY:
                # Let Twisted see and report the error in its own time.
                transport.write(data)
                return
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
