"""
``twistd labrelay-client``: command-line options and service construction.

The INI file is loaded and validated in ``postOptions``, before twistd
daemonizes, so a bad config is one clear line and a non-zero exit.
"""

import os

from twisted.python import usage

from . import VERSION_TEXT
from .config import ConfigError, load_client_config
from .startup import prepare_service, refuse_config
from .tls import TLSConfigError, client_tls_options

PROGRAM = "labrelay-client"


class Options(usage.Options):
    synopsis = "[-c frpc.ini]"
    longdesc = (
        "Run the labrelay tunnel client, configured by an frp-style frpc.ini file."
    )
    optParameters = [
        ["config", "c", "frpc.ini", "path of the frpc.ini configuration file"],
    ]

    def opt_version(self):
        """Print labrelay's version (and the frp version it speaks); exit."""
        print(VERSION_TEXT)
        raise SystemExit(0)

    def postOptions(self):
        try:
            self.client_config = load_client_config(self["config"])
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
                    PROGRAM, f"{config.source}: [common] {e}", config.warnings
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
    return prepare_service(options, service, config)
