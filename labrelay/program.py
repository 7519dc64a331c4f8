"""
What the relay's and the client's top services share as twistd programs:
the config they run with, the log observer twistd gets from it, SIGHUP as
"reload your config file" while they run, and systemd's notifier.

Each side's :class:`ProgramService` subclass
(:class:`~labrelay.server.service.RelayServer`,
:class:`~labrelay.client.service.RelayClient`) says what a reload does in
``_reload_from_signal`` and what starting and stopping mean.
"""

from twisted.application import service

from .logs import install_log_observer
from .sdnotify import Notifier
from .sighup import SighupHandler


class ProgramService(service.MultiService):
    """
    :param config: the parsed config the program runs with.
    :param reactor: the reactor (also the clock).
    :param config_path: the file a reload reads again (None: no file, no
        SIGHUP handler).
    :param notifier: a :class:`labrelay.sdnotify.Notifier` (default: for
        ``$NOTIFY_SOCKET``, which does nothing when it is unset).
    """

    #: set by the tap: twistd's log observer built from the config
    log_observer = None

    #: whether a reload reads a v1 file in frp's strict mode (an unknown
    #: key is an error); twistd's --strict_config sets it
    strict_config = True

    def __init__(self, config, reactor, config_path=None, notifier=None):
        super().__init__()
        self.config = config
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        #: reloads on SIGHUP while running, when there is a config file
        self.sighup = SighupHandler(reactor, self._reload_from_signal)
        self.reactor = reactor
        self.clock = reactor

    def _reload_from_signal(self) -> None:
        raise NotImplementedError

    def reload_on_sighup(self) -> None:
        """Install the SIGHUP handler if there is a file to reload."""
        if self.config_path:
            self.sighup.install()

    def setServiceParent(self, parent):
        install_log_observer(parent, self.log_observer)
        return super().setServiceParent(parent)

    def begin_stopping(self) -> None:
        """The first steps of every stop: SIGHUP back to what it was,
        systemd told."""
        self.sighup.restore()
        self.notifier.stopping("stopping")


__all__ = ["ProgramService"]
