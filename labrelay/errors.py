"""
The exceptions labrelay raises across module boundaries.

Each carries a one-line message meant for a log line or an frp error field.
"""


class LabrelayError(Exception):
    """Base class of labrelay's own errors."""


class ProtocolError(LabrelayError):
    """The peer sent bytes that break frp's wire protocol."""


class AuthenticationFailed(LabrelayError):
    """A Login, Ping or NewWorkConn carried a wrong privilege key."""


class LoginRefused(LabrelayError):
    """The server answered our Login with an error."""


class NoWorkConnection(LabrelayError):
    """No work connection arrived within user_conn_timeout."""


class ProxyError(LabrelayError):
    """A proxy could not be registered; the message goes into NewProxyResp."""
