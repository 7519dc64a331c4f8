# -*- test-case-name: tests.unit.test_config -*-
"""
labrelay's configuration: frp's config files, the legacy INI (frps.ini,
frpc.ini) and the v1 format (frps.toml, frpc.toml, and YAML and JSON; frp
>= 0.52), turned into frozen attrs values, with frp's defaults.

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
* :mod:`.errors`: :class:`ConfigError` and the warning collector;
* :mod:`.v1keys`: which v1 key is which INI key (one table);
* :mod:`.v1text`: the v1 formats' text (which format a file is in,
  templates, parsing, the line of a key);
* :mod:`.v1read`: a v1 document written as INI entries, so that the INI
  layer's checks and defaults apply, and its messages named in v1 words;
* :mod:`.convert`: INI text converted to a v1 file.

The parsers pick the format by the file's extension (:func:`config_format`).
This module only re-exports the public names.
"""

from .client import (
    CLIENT_KEYS,
    CLIENT_OWN_KEYS,
    CLIENT_RELOADABLE,
    ClientConfig,
    load_client_config,
    parse_client_config,
)
from .convert import convert_client_config, convert_server_config
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
from .v1text import FORMATS, config_format

__all__ = [
    "ConfigError",
    "FORMATS",
    "config_format",
    "convert_server_config",
    "convert_client_config",
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
