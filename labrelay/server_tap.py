"""
``twistd labrelay-server``: command-line options and service construction.

The config file (INI, or frp's v1 TOML, YAML or JSON) is loaded and
validated in ``postOptions``, before twistd daemonizes, so a bad config is one clear line and a non-zero exit.  The
server is given the file's path, so SIGHUP reloads it.
"""

import os

from twisted.python import usage

from . import VERSION_TEXT
from .config import ConfigError, load_server_config
from .config.ini import parse_go_bool
from .startup import prepare_service, refuse_config, tls_section
from .tls import TLSConfigError, server_tls_options

PROGRAM = "labrelay-server"


class Options(usage.Options):
    synopsis = "[-c frps.ini]"
    longdesc = (
        "Run the labrelay relay server, configured by an frp-style frps.ini "
        "(or frps.toml) file."
    )
    optParameters = [
        [
            "config",
            "c",
            "frps.ini",
            "path of the configuration file: frps.ini, or frp's v1 "
            "frps.toml, .yaml, .yml or .json",
        ],
        [
            "strict_config",
            None,
            "true",
            "for v1 files, a key frp does not know is an error "
            "(false: a warning), as frp's --strict_config",
        ],
    ]

    def opt_version(self):
        """Print labrelay's version (and the frp version it speaks); exit."""
        print(VERSION_TEXT)
        raise SystemExit(0)

    def postOptions(self):
        try:
            self["strict"] = parse_go_bool(self["strict_config"])
        except ValueError as e:
            raise usage.UsageError(f"--strict_config: {e}") from None
        try:
            self.server_config = load_server_config(
                self["config"], strict=self["strict"]
            )
        except ConfigError as e:
            raise refuse_config(PROGRAM, e, e.warnings) from None
        config = self.server_config
        try:
            self.tls_options = server_tls_options(
                config.tls_cert_file, config.tls_key_file, config.tls_trusted_ca_file
            )
        except TLSConfigError as e:
            raise refuse_config(
                PROGRAM, f"{config.source}: {tls_section(config)} {e}", config.warnings
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
    service.strict_config = options["strict"]
    return prepare_service(options, service, config)
