# The twistd entry points of labrelay.  twistd imports every dropin in this
# folder on each start, so this file stays tiny: the real modules are only
# imported when their command runs.
from twisted.application.service import ServiceMaker

labrelayServer = ServiceMaker(
    "labrelay server",
    "labrelay.server_tap",
    "frp-compatible relay server (frps): public ports for private servers",
    "labrelay-server",
)

labrelayClient = ServiceMaker(
    "labrelay client",
    "labrelay.client_tap",
    "frp-compatible tunnel client (frpc): exposes local services via a relay",
    "labrelay-client",
)
