"""
labrelay: an frp-compatible reverse tunnel built on Twisted.

The package is split by concern: ``protocol`` holds the sans-IO wire format
(framing, messages, authentication, control-channel crypto, compression),
``mux`` the yamux multiplexer, ``server`` and ``client`` the two programs,
``relay`` the one place bytes are copied between two connections, and
``config`` the frp-compatible INI loader.  The twistd entry points are
``server_tap`` and ``client_tap``.
"""

__version__ = "0.1.0"

#: The frp version labrelay speaks and announces in Login/LoginResp.  frps up
#: to v0.51 rejects clients that announce a version below 0.18.0, and one
#: without three dotted parts counts as 0.0.0, so this must look like frp's.
FRP_VERSION = "0.51.3"

#: What labrelay calls itself to people (logs, ``--version``, the
#: dashboard); the wire keeps announcing :data:`FRP_VERSION`.
VERSION_TEXT = f"labrelay {__version__} (speaks frp {FRP_VERSION})"
