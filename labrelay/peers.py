"""
Small helpers for naming connections in log lines and frp messages.
"""


def host_port(address):
    """(host, port) of a Twisted address, or ("", 0) when it has none."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return "", 0
    return host, port


def describe(transport) -> str:
    """``host:port`` of the peer of *transport*, for log lines."""
    try:
        host, port = host_port(transport.getPeer())
    except Exception:
        return "?"
    if not host:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def raw_socket(transport):
    """
    The socket under *transport*, looking through TLS wrappers and yamux
    streams; None when there is none (memory transports in tests).
    """
    seen = 0
    while transport is not None and seen < 8:
        seen += 1
        handle = getattr(transport, "getHandle", None)
        if handle is not None:
            try:
                candidate = handle()
            except Exception:
                candidate = None
            if hasattr(candidate, "setsockopt"):
                return candidate
        session = getattr(transport, "_session", None)
        transport = (
            session.transport
            if session is not None
            else getattr(transport, "transport", None)
        )
    return None


def set_keepalive(transport, seconds: int) -> None:
    """
    TCP keep-alive with an idle time of *seconds* (frp's tcp_keepalive and
    dial_server_keepalive); a negative or zero value turns it off.
    """
    import socket

    sock = raw_socket(transport)
    if sock is None:
        return
    try:
        if seconds <= 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), seconds)
    except OSError:
        pass
