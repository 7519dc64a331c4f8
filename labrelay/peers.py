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
