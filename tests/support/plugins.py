"""
What twistd shows for labrelay's two commands: their one-line
descriptions, as the plugin dropin declares them.
"""

SERVER_DESCRIPTION = (
    "frp-compatible relay server (frps): public ports for private servers"
)
CLIENT_DESCRIPTION = (
    "frp-compatible tunnel client (frpc): exposes local services via a relay"
)
