# -*- test-case-name: tests.unit.test_config -*-
"""
labrelay's configuration: frp legacy INI files (frps.ini, frpc.ini) turned
into frozen attrs values, with frp's defaults.

The package is layered, each module owning one step:

* :mod:`.template`: the Go template pass frp applies to a file first;
* :mod:`.ini`: the INI dialect and the value syntaxes (Go booleans and
  integers, lists, port ranges: :class:`PortSet`);
* :mod:`.schema`: what each key is (field metadata on the models, and the
  tables of frp keys labrelay does not implement);
* :mod:`.values`: typed values from written ones, shared ``[common]``
  reading and checks;
* :mod:`.server` and :mod:`.client`: the models and their parsers, with
  frpc's proxy sections in :mod:`.proxy`;
* :mod:`.errors`: :class:`ConfigError` and the warning collector.

A second syntax (TOML, YAML) would add a reader beside :mod:`.ini` that
feeds the same models.  This module only re-exports the public names.
"""

from .client import (
    CLIENT_KEYS,
    CLIENT_OWN_KEYS,
    CLIENT_RELOADABLE,
    ClientConfig,
    load_client_config,
    parse_client_config,
)
from .errors import ConfigError
from .ini import PortSet, parse_port_ranges
from .proxy import (
    HTTP_PROXY_KEYS,
    OTHER_PROXY_KEYS,
    PROXY_KEYS,
    TCP_PROXY_KEYS,
    ProxyConfig,
)
from .schema import (
    CLIENT_NOT_YET,
    CLIENT_NOT_YET_PREFIXES,
    NOT_YET_DEFAULTS,
    OLD_KEYS,
    PROXY_NOT_YET,
    PROXY_NOT_YET_PREFIXES,
    SERVER_NOT_YET,
    SERVER_NOT_YET_PREFIXES,
)
from .server import (
    SERVER_KEYS,
    SERVER_OWN_KEYS,
    SERVER_RELOADABLE,
    ServerConfig,
    is_loopback,
    load_server_config,
    parse_server_config,
)

__all__ = [
    "ConfigError",
    "PortSet",
    "parse_port_ranges",
    "ServerConfig",
    "ProxyConfig",
    "ClientConfig",
    "parse_server_config",
    "parse_client_config",
    "load_server_config",
    "load_client_config",
    "SERVER_KEYS",
    "SERVER_OWN_KEYS",
    "SERVER_NOT_YET",
    "SERVER_NOT_YET_PREFIXES",
    "SERVER_RELOADABLE",
    "CLIENT_KEYS",
    "CLIENT_OWN_KEYS",
    "CLIENT_NOT_YET",
    "CLIENT_NOT_YET_PREFIXES",
    "CLIENT_RELOADABLE",
    "PROXY_KEYS",
    "TCP_PROXY_KEYS",
    "HTTP_PROXY_KEYS",
    "PROXY_NOT_YET",
    "PROXY_NOT_YET_PREFIXES",
    "OTHER_PROXY_KEYS",
    "NOT_YET_DEFAULTS",
    "OLD_KEYS",
    "is_loopback",
]
