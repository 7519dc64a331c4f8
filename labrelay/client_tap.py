"""
``twistd labrelay-client``: command-line options and service construction.

The config file (INI, or frp's v1 TOML, YAML or JSON) is loaded and
validated in ``postOptions``, before twistd daemonizes, so a bad config is one clear line and a non-zero exit.
"""

import os

from twisted.python import usage

from . import VERSION_TEXT
from .config import ConfigError, load_client_config
from .config.ini import parse_go_bool
from .startup import prepare_service, refuse_config, tls_section
from .tls import TLSConfigError, client_tls_options

PROGRAM = "labrelay-client"


class Options(usage.Options):
    synopsis = "[-c frpc.ini]"
    longdesc = (
        "Run the labrelay tunnel client, configured by an frp-style frpc.ini "
        "(or frpc.toml) file."
    )
    optParameters = [
        [
            "config",
            "c",
            "frpc.ini",
            "path of the configuration file: frpc.ini, or frp's v1 "
            "frpc.toml, .yaml, .yml or .json",
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
            self.client_config = load_client_config(
                self["config"], strict=self["strict"]
            )
        except ConfigError as e:
            raise refuse_config(PROGRAM, e, e.warnings) from None
        config = self.client_config
        self.tls_options = None
        if config.tls_enable:
            try:
                self.tls_options = client_tls_options(
                    config.tls_server_name or config.server_addr,
                    config.tls_trusted_ca_file,
                    config.tls_cert_file,
                    config.tls_key_file,
                )
            except TLSConfigError as e:
                raise refuse_config(
                    PROGRAM,
                    f"{config.source}: {tls_section(config)} {e}",
                    config.warnings,
                ) from None


def build_endpoint(reactor, config, tls_options):
    """The endpoint every connection to the server is made through."""
    from .endpoints import client_endpoint

    return client_endpoint(
        reactor,
        server_addr=config.server_addr,
        server_port=config.server_port,
        dial_timeout=config.dial_server_timeout,
        local_ip=config.connect_server_local_ip,
        tls_enable=config.tls_enable,
        tls_options=tls_options,
        send_tls_first_byte=not config.disable_custom_tls_first_byte,
    )


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from .client.service import RelayClient

    config = options.client_config
    endpoint = build_endpoint(reactor, config, options.tls_options)
    service = RelayClient(
        config, reactor, endpoint, config_path=os.path.abspath(options["config"])
    )
    service.strict_config = options["strict"]
    return prepare_service(options, service, config)
