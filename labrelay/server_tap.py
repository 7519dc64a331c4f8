"""
``twistd labrelay-server``: command-line options and service construction.

The INI file is loaded and validated in ``postOptions``, before twistd
daemonizes, so a bad config is one clear line and a non-zero exit.  The
server is given the file's path, so SIGHUP reloads it.
"""

import os

from twisted.python import usage

from . import VERSION_TEXT
from .config import ConfigError, load_server_config
from .startup import prepare_service, refuse_config
from .tls import TLSConfigError, server_tls_options

PROGRAM = "labrelay-server"


class Options(usage.Options):
    synopsis = "[-c frps.ini]"
    longdesc = (
        "Run the labrelay relay server, configured by an frp-style frps.ini file."
    )
    optParameters = [
        ["config", "c", "frps.ini", "path of the frps.ini configuration file"],
    ]

    def opt_version(self):
        """Print labrelay's version (and the frp version it speaks); exit."""
        print(VERSION_TEXT)
        raise SystemExit(0)

    def postOptions(self):
        try:
            self.server_config = load_server_config(self["config"])
        except ConfigError as e:
            raise refuse_config(PROGRAM, e, e.warnings) from None
        config = self.server_config
        try:
            self.tls_options = server_tls_options(
                config.tls_cert_file, config.tls_key_file, config.tls_trusted_ca_file
            )
        except TLSConfigError as e:
            raise refuse_config(
                PROGRAM, f"{config.source}: [common] {e}", config.warnings
            ) from None


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from .server.service import RelayServer

    config = options.server_config
    service = RelayServer(
        config,
        reactor,
        options.tls_options,
        config_path=os.path.abspath(options["config"]),
    )
    return prepare_service(options, service, config)
