"""
Every fuzz target by name, in the order ``tools/fuzz.py`` runs them: the
decoders', the protocols', the admin API's and the route table's.
"""

from .admin import ADMIN
from .decoders import CodecTarget, ConfigTarget, FramingTarget, MessagesTarget
from .routes import ROUTES
from .server import ControlTarget, ServerMuxTarget, ServerPlainTarget
from .vhost import VhostTarget
from .yamux import YamuxFramesTarget, YamuxSessionTarget

TARGETS = {
    t.name: t
    for t in (
        FramingTarget(),
        MessagesTarget(),
        ControlTarget(),
        CodecTarget(),
        YamuxFramesTarget(),
        YamuxSessionTarget(),
        ConfigTarget(),
        VhostTarget(),
        ServerPlainTarget(),
        ServerMuxTarget(),
        ADMIN,
        ROUTES,
    )
}
