# -*- test-case-name: tests.unit.test_config -*-
"""
frpc.ini: the client's settings (:class:`ClientConfig`) and their parser.

This module owns the client model (one field per implemented ``[common]``
key, declared with :func:`~labrelay.config.schema.setting`), the tables
generated from it (:data:`CLIENT_KEYS`, :data:`CLIENT_OWN_KEYS`,
:data:`CLIENT_RELOADABLE`), and the client's validation of ``[common]``
and ``includes``; the proxy sections are read by
:mod:`~labrelay.config.proxy`.  :func:`parse_client_config` is pure but
for reading included files; :func:`load_client_config` adds reading the
file itself.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from typing import Optional

import attrs

from .errors import Warnings, fail
from .ini import IniDocument
from .proxy import Pairs, ProxyConfig, read_proxies
from .schema import (
    CLIENT_NOT_YET,
    CLIENT_NOT_YET_PREFIXES,
    NOT_YET_PROTOCOLS,
    key_table,
    reloadable_keys,
    setting,
)
from .server import SERVER_KEYS, SERVER_OWN_KEYS
from .v1text import config_format
from .values import (
    CommonKeys,
    check_common,
    common_section,
    document,
    read_common,
    read_file,
    warn_outside_sections,
)
from .visitor import VisitorConfig, read_visitors


@attrs.frozen
class ClientConfig:
    """frpc.ini: ``[common]`` (one attribute per implemented key) + proxies."""

    server_addr: str = setting("0.0.0.0")
    server_port: int = setting(7000, "port1")
    protocol: str = setting("tcp")
    user: str = setting("")
    token: str = setting("")
    authentication_method: str = setting("token")
    authenticate_heartbeats: bool = setting(False)
    authenticate_new_work_conns: bool = setting(False)
    metas: Pairs = ()
    pool_count: int = setting(1)
    tcp_mux: bool = setting(True)
    tcp_mux_keepalive_interval: int = setting(30)
    heartbeat_interval: int = setting(30)
    heartbeat_timeout: int = setting(-1)
    login_fail_exit: bool = setting(True)
    dial_server_timeout: int = setting(10)
    dial_server_keepalive: int = setting(7200)
    connect_server_local_ip: str = setting("")
    tls_enable: bool = setting(True)
    tls_cert_file: str = setting("")
    tls_key_file: str = setting("")
    tls_trusted_ca_file: str = setting("")
    tls_server_name: str = setting("")
    disable_custom_tls_first_byte: bool = setting(True)
    udp_packet_size: int = setting(1500)
    start: tuple[str, ...] = setting((), reloadable=True)
    includes: tuple[str, ...] = setting((), reloadable=True)
    log_file: str = setting("console")
    log_level: str = setting("info")
    log_way: str = setting("console")
    disable_log_color: bool = setting(False)
    log_max_days: int = setting(3)
    admin_addr: str = setting("127.0.0.1", reloadable=True)
    #: 0: no admin API
    admin_port: int = setting(0, "port", reloadable=True)
    admin_user: str = setting("", reloadable=True)
    admin_pwd: str = setting("", reloadable=True)
    #: labrelay's own (CLIENT_OWN_KEYS): as the server's max_buffered_bytes
    max_buffered_bytes: int = setting(16 * 1024 * 1024, own=True)
    proxies: tuple[ProxyConfig, ...] = ()
    visitors: tuple[VisitorConfig, ...] = ()
    source: str = "frpc.ini"
    warnings: tuple[str, ...] = ()

    @property
    def format(self) -> str:
        """The format the settings were read from: ``ini``, ``toml``,
        ``yaml`` or ``json`` (chosen by :attr:`source`'s extension)."""
        return config_format(self.source)


#: frpc.ini [common] keys labrelay implements (plus the meta_* prefix).
CLIENT_KEYS = key_table(ClientConfig)
#: frpc.ini [common] keys of labrelay's own (frp has none of them).
CLIENT_OWN_KEYS = key_table(ClientConfig, own=True)
#: frpc.ini [common] keys a reload applies (they decide which proxies
#: exist, or belong to the admin API); the others need a restart.
CLIENT_RELOADABLE = reloadable_keys(ClientConfig)

_COMMON_KEYS = CommonKeys(
    keys={**CLIENT_KEYS, **CLIENT_OWN_KEYS},
    not_yet=CLIENT_NOT_YET,
    not_yet_prefixes=CLIENT_NOT_YET_PREFIXES,
    other_keys={**SERVER_KEYS, **SERVER_OWN_KEYS},
    other="frps",
    metas=True,
)


def parse_client_config(
    text: str,
    source: str = "frpc.ini",
    environ: Optional[Mapping[str, str]] = None,
    base_dir: Optional[str] = None,
    *,
    strict: bool = True,
) -> ClientConfig:
    """
    Parse frpc config text into a :class:`ClientConfig`, in the format
    *source*'s extension says (:func:`~.v1text.config_format`).  Relative
    ``includes`` are resolved against ``base_dir`` (default: the directory
    of ``source``).

    :param strict: in frp's v1 formats, a key frp does not know is an error
        (a warning when false), as frp's ``--strict_config``; INI files are
        not affected.
    """
    fmt = config_format(source)
    if fmt != "ini":
        from .v1read import parse_client_v1

        return parse_client_v1(text, source, environ, base_dir, fmt=fmt, strict=strict)
    warnings = Warnings()
    with warnings.kept_on_error():
        return _parse_client(text, source, environ, base_dir, warnings)


def _parse_client(text, source, environ, base_dir, warnings) -> ClientConfig:
    doc = IniDocument()
    document(text, source, environ, doc)
    common = common_section(doc, source)
    values, metas = read_client_common(common, source, warnings)
    if base_dir is None:
        base_dir = os.path.dirname(source) or os.curdir
    for pattern in values.get("includes", ()):
        _include(doc, pattern, base_dir, source, environ, warnings)
    warn_outside_sections(doc, warnings)
    return client_from_document(doc, values, metas, source, warnings)


def read_client_common(section, source: str, warnings: Warnings):
    """Typed and checked values of frpc [common] (as INI keys), and its
    meta_* pairs."""
    values, metas = read_common(section, _COMMON_KEYS, warnings)
    check_common(values, source)
    for key in CLIENT_OWN_KEYS:
        if values.get(key, 0) < 0:
            raise fail(
                source,
                "common",
                key,
                f"must not be negative (0 turns it off), not {values[key]}",
            )
    _check_client(values, source, warnings)
    return values, metas


def client_from_document(
    doc: IniDocument,
    values: dict,
    metas,
    source: str,
    warnings: Warnings,
    other_names=(),
) -> ClientConfig:
    """The :class:`ClientConfig` of checked [common] *values* and the
    proxy sections of *doc*; *other_names* (visitors kept outside *doc*)
    may be named by ``start`` too."""
    proxies = read_proxies(doc, values, source, warnings, other_names)
    return ClientConfig(
        **values,
        metas=metas,
        proxies=proxies,
        visitors=read_visitors(doc, values, warnings),
        source=source,
        warnings=tuple(warnings.items),
    )


def load_client_config(
    path, environ: Optional[Mapping[str, str]] = None, *, strict: bool = True
) -> ClientConfig:
    """Read and parse an frpc config file (frpc.ini, frpc.toml, ...) and
    the files it includes."""
    source, text = read_file(path)
    return parse_client_config(
        text, source, environ, os.path.dirname(source) or os.curdir, strict=strict
    )


def _check_client(values: dict, source: str, warnings: Warnings) -> None:
    """Validate frpc [common] and resolve frp's "unset" defaults."""
    protocol = values.get("protocol", "tcp")
    if protocol in NOT_YET_PROTOCOLS:
        raise fail(
            source,
            "common",
            "protocol",
            f"protocol {protocol} is not supported by labrelay yet; use tcp",
        )
    if protocol != "tcp":
        raise fail(
            source,
            "common",
            "protocol",
            f"invalid protocol {protocol!r}; frp accepts tcp, kcp, "
            f"quic, websocket, wss",
        )
    if values.get("pool_count", 1) < 0:
        raise fail(source, "common", "pool_count", "must not be negative")
    tcp_mux = values.get("tcp_mux", True)
    values.setdefault("heartbeat_timeout", -1 if tcp_mux else 90)
    interval = values.setdefault("heartbeat_interval", 30)
    timeout = values["heartbeat_timeout"]
    if interval > 0 and 0 < timeout < interval:
        raise fail(
            source,
            "common",
            "heartbeat_timeout",
            f"{timeout} is less than heartbeat_interval {interval}",
        )
    if not values.get("tls_enable", True):
        for key in (
            "tls_cert_file",
            "tls_key_file",
            "tls_trusted_ca_file",
            "tls_server_name",
        ):
            if values.get(key):
                warnings.add(
                    source, "common", key, "has no effect when tls_enable is false"
                )


def _include(
    doc: IniDocument,
    pattern: str,
    base_dir: str,
    source: str,
    environ,
    warnings: Warnings,
) -> None:
    """Append the files matching one ``includes`` entry to ``doc``."""
    for file in included_files(pattern, base_dir, source, warnings):
        file, text = read_file(file)
        if "common" in document(text, file, environ, doc):
            warnings.add(
                file, "common", None, "[common] of an included file is ignored"
            )


def included_files(
    pattern: str, base_dir: str, source: str, warnings: Warnings
) -> list[str]:
    """The files one ``includes`` entry names, sorted (a relative pattern
    is relative to *base_dir*); a warning when there is none."""
    path = pattern if os.path.isabs(pattern) else os.path.join(base_dir, pattern)
    directory, glob = os.path.split(path)
    directory = os.path.abspath(directory or os.curdir)
    if not os.path.isdir(directory):
        raise fail(
            source,
            "common",
            "includes",
            f"directory {directory!r} of {pattern!r} does not exist",
        )
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise fail(
            source,
            "common",
            "includes",
            f"cannot list {directory!r}: {e.strerror or e}",
        ) from None
    matched = [
        os.path.join(directory, name)
        for name in names
        if fnmatch.fnmatchcase(name, glob)
        and os.path.isfile(os.path.join(directory, name))
    ]
    if not matched:
        warnings.add(source, "common", "includes", f"{pattern!r} matches no file")
    return matched
