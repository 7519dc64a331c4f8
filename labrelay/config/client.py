# -*- test-case-name: tests.unit.test_config -*-
"""
frpc.ini: the client's settings (:class:`ClientConfig`), its proxies
(:class:`ProxyConfig`) and their parser.

This module owns the client and proxy models (one field per implemented
key, declared with :func:`~labrelay.config.schema.setting`), the tables
generated from them (:data:`CLIENT_KEYS`, :data:`CLIENT_OWN_KEYS`,
:data:`CLIENT_RELOADABLE`, :data:`PROXY_KEYS`, :data:`TCP_PROXY_KEYS`,
:data:`HTTP_PROXY_KEYS`), and the client's validation: ``[common]``,
``includes``, ``start``, ``range:`` sections and proxy sections.
:func:`parse_client_config` is pure but for reading included files;
:func:`load_client_config` adds reading the file itself.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from typing import Optional

import attrs

from .errors import Warnings, fail
from .ini import DEFAULT_SECTION, IniDocument, Section
from .schema import (
    CLIENT_NOT_YET,
    CLIENT_NOT_YET_PREFIXES,
    MAX_RANGE_PORTS,
    NOT_YET_PROTOCOLS,
    NOT_YET_PROXY_TYPES,
    OTHER_TYPE_PROXY_KEYS,
    PROXY_NOT_YET,
    PROXY_NOT_YET_PREFIXES,
    SUPPORTED_PROXY_TYPES,
    key_table,
    reloadable_keys,
    setting,
)
from .server import SERVER_KEYS, SERVER_OWN_KEYS
from .values import (
    CommonKeys,
    at_default,
    check_common,
    common_section,
    convert,
    did_you_mean,
    document,
    read_common,
    read_file,
    warn_outside_sections,
)

Pairs = tuple[tuple[str, str], ...]


@attrs.frozen
class ProxyConfig:
    """One tcp or http proxy of frpc.ini."""

    name: str
    section: str = attrs.field(
        default=attrs.Factory(lambda self: self.name, takes_self=True)
    )
    type: str = setting("tcp")
    local_ip: str = setting("127.0.0.1")
    local_port: int = setting(0, "port")
    remote_port: int = setting(0, "port", proxy_types=("tcp",))
    use_encryption: bool = setting(False)
    use_compression: bool = setting(False)
    custom_domains: tuple[str, ...] = setting((), proxy_types=("http",))
    subdomain: str = setting("", proxy_types=("http",))
    locations: tuple[str, ...] = setting((), proxy_types=("http",))
    http_user: str = setting("", proxy_types=("http",))
    http_pwd: str = setting("", proxy_types=("http",))
    host_header_rewrite: str = setting("", proxy_types=("http",))
    route_by_http_user: str = setting("", proxy_types=("http",))
    headers: Pairs = ()
    metas: Pairs = ()


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
    source: str = "frpc.ini"
    warnings: tuple[str, ...] = ()


#: frpc.ini [common] keys labrelay implements (plus the meta_* prefix).
CLIENT_KEYS = key_table(ClientConfig)
#: frpc.ini [common] keys of labrelay's own (frp has none of them).
CLIENT_OWN_KEYS = key_table(ClientConfig, own=True)
#: frpc.ini [common] keys a reload applies (they decide which proxies
#: exist, or belong to the admin API); the others need a restart.
CLIENT_RELOADABLE = reloadable_keys(ClientConfig)

#: Proxy keys labrelay implements, for every type (plus meta_*); ``role``
#: has no field: it decides whether the section is a proxy at all.
PROXY_KEYS = {**key_table(ProxyConfig, proxy_type=""), "role": "str"}
TCP_PROXY_KEYS = key_table(ProxyConfig, proxy_type="tcp")
#: http proxy keys labrelay implements (plus header_*).
HTTP_PROXY_KEYS = key_table(ProxyConfig, proxy_type="http")
#: frp keys of other proxy types and of visitors: ignored where they do not
#: apply, as frp ignores them.
OTHER_PROXY_KEYS = OTHER_TYPE_PROXY_KEYS | set(TCP_PROXY_KEYS) | set(HTTP_PROXY_KEYS)

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
) -> ClientConfig:
    """
    Parse frpc.ini text into a :class:`ClientConfig`.  Relative ``includes``
    are resolved against ``base_dir`` (default: the directory of ``source``).
    """
    warnings = Warnings()
    with warnings.kept_on_error():
        return _parse_client(text, source, environ, base_dir, warnings)


def _parse_client(text, source, environ, base_dir, warnings) -> ClientConfig:
    doc = IniDocument()
    document(text, source, environ, doc)
    common = common_section(doc, source)
    values, metas = read_common(common, _COMMON_KEYS, warnings)
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
    if base_dir is None:
        base_dir = os.path.dirname(source) or os.curdir
    for pattern in values.get("includes", ()):
        _include(doc, pattern, base_dir, source, environ, warnings)
    warn_outside_sections(doc, warnings)
    proxies = _read_proxies(doc, values, source, warnings)
    return ClientConfig(
        **values,
        metas=metas,
        proxies=proxies,
        source=source,
        warnings=tuple(warnings.items),
    )


def load_client_config(
    path, environ: Optional[Mapping[str, str]] = None
) -> ClientConfig:
    """Read and parse an frpc.ini file (and the files it includes)."""
    source, text = read_file(path)
    return parse_client_config(
        text, source, environ, os.path.dirname(source) or os.curdir
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
    for file in matched:
        file, text = read_file(file)
        if "common" in document(text, file, environ, doc):
            warnings.add(
                file, "common", None, "[common] of an included file is ignored"
            )


# -- proxies -----------------------------------------------------------------


def _read_proxies(
    doc: IniDocument, common: dict, source: str, warnings: Warnings
) -> tuple[ProxyConfig, ...]:
    """Every started tcp/http proxy in file order (ranges expanded in
    place)."""
    start = common.get("start", ())
    user = common.get("user", "")
    proxies = []
    loaded = set()
    generated = set()
    for name, section in list(doc.sections.items()):
        if name in (DEFAULT_SECTION, "common"):
            continue
        if name.startswith("range:"):
            views = _expand_range(doc, section, generated)
        else:
            views = [(name, section.entries)]
        for proxy_name, entries in views:
            if start and proxy_name not in start:
                continue
            loaded.add(proxy_name)
            proxy = _proxy(
                doc, proxy_name, name, section.source, entries, user, warnings
            )
            if proxy is not None:
                proxies.append(proxy)
    for name in start:
        if name not in loaded:
            warnings.add(source, "common", "start", f"no section named {name!r}")
    return tuple(proxies)


def _expand_range(doc: IniDocument, section: Section, generated: set):
    """The (name, entries) of the proxies a ``range:`` section stands for."""
    ports = []
    for key in ("local_port", "remote_port"):
        entry = doc.lookup(section.name, key)
        if entry is None or entry.value == "":
            raise fail(
                section.source,
                section.name,
                key,
                "a range: section needs local_port and remote_port",
            )
        written = convert(entry, section.name, key, "ports")
        if sum(high - low + 1 for low, high in written.ranges) > MAX_RANGE_PORTS:
            raise fail(entry.source, section.name, key, "too many ports")
        ports.append((entry, written.in_order()))
    (local, local_ports), (remote, remote_ports) = ports
    if len(local_ports) != len(remote_ports):
        raise fail(
            remote.source,
            section.name,
            "remote_port",
            f"lists {len(remote_ports)} ports but local_port lists "
            f"{len(local_ports)}; the counts must match",
        )
    prefix = section.name[len("range:") :].strip()
    views = []
    for index, (local_port, remote_port) in enumerate(zip(local_ports, remote_ports)):
        name = f"{prefix}_{index}"
        if name in doc.sections or name in generated:
            raise fail(
                section.source,
                section.name,
                None,
                f"generated proxy name {name!r} is already used",
            )
        generated.add(name)
        entries = dict(section.entries)
        entries["local_port"] = attrs.evolve(local, value=str(local_port))
        entries["remote_port"] = attrs.evolve(remote, value=str(remote_port))
        views.append((name, entries))
    return views


def _proxy(
    doc: IniDocument,
    name: str,
    label: str,
    origin: str,
    entries: dict,
    user: str,
    warnings: Warnings,
) -> Optional[ProxyConfig]:
    """
    One proxy from its section's own ``entries`` (keys missing there come
    from dotted parent sections, as in go-ini); None if it is skipped.
    ``label`` names the section as written (the range: section, if any).
    """

    def get(key: str, kind: str = "str", default=None):
        entry = entries.get(key) or doc.lookup(name, key)
        if entry is None or entry.value == "":
            return default
        return convert(entry, label, key, kind)

    role = get("role", default="server")
    if role == "visitor":
        warnings.add(
            origin,
            label,
            None,
            "visitor sections are not supported by labrelay yet; section skipped",
        )
        return None
    if role != "server":
        raise fail(
            origin, label, "role", f"must be 'server' or 'visitor', not {role!r}"
        )
    ptype = get("type", default="tcp")
    plugin = get("plugin")
    if ptype in NOT_YET_PROXY_TYPES or plugin:
        what = (
            f"proxy type {ptype}"
            if ptype in NOT_YET_PROXY_TYPES
            else f"plugin {plugin}"
        )
        warnings.add(
            origin,
            label,
            None,
            f"{what} is not supported by labrelay yet; section skipped",
        )
        return None
    if ptype not in SUPPORTED_PROXY_TYPES:
        raise fail(origin, label, "type", f"unknown proxy type {ptype!r}")
    http = ptype == "http"
    keys = {**PROXY_KEYS, **(HTTP_PROXY_KEYS if http else TCP_PROXY_KEYS)}
    prefixes = ("meta_", "header_") if http else ("meta_",)
    pairs: dict[str, list] = {prefix: [] for prefix in prefixes}
    for key, entry in entries.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            pairs[prefix].append((key[len(prefix) :], entry.value))
        elif key in keys:
            continue
        elif key in PROXY_NOT_YET or key.startswith(PROXY_NOT_YET_PREFIXES):
            value = (
                convert(entry, label, key, PROXY_NOT_YET.get(key, "str"))
                if entry.value != ""
                else None
            )
            if not at_default(key, value):
                warnings.add(
                    entry.source, label, key, "not supported by labrelay yet; ignored"
                )
        elif key == "name":
            warnings.add(
                entry.source, label, key, "ignored; the section name is the proxy name"
            )
        elif key in OTHER_PROXY_KEYS or key.startswith("header_"):
            warnings.add(
                entry.source, label, key, f"not used by {ptype} proxies; ignored"
            )
        else:
            warnings.add(
                entry.source,
                label,
                key,
                "unknown key; ignored" + did_you_mean(key, {**keys, **PROXY_NOT_YET}),
            )
    local_port = get("local_port", "port", 0)
    if local_port <= 0:
        raise fail(
            origin,
            label,
            "local_port",
            "required: the local port to forward to (1-65535)",
        )
    fields = dict(
        name=f"{user}.{name}" if user else name,
        section=name,
        type=ptype,
        local_ip=get("local_ip", default="127.0.0.1"),
        local_port=local_port,
        use_encryption=get("use_encryption", "bool", False),
        use_compression=get("use_compression", "bool", False),
        metas=tuple(pairs["meta_"]),
    )
    if not http:
        return ProxyConfig(remote_port=get("remote_port", "port", 0), **fields)
    for key, kind in HTTP_PROXY_KEYS.items():
        value = get(key, kind)
        if value is not None:
            fields[key] = value
    subdomain = fields.get("subdomain", "")
    if not fields.get("custom_domains") and not subdomain:
        raise fail(
            origin,
            label,
            "custom_domains",
            "an http proxy needs custom_domains or subdomain",
        )
    if "." in subdomain or "*" in subdomain:
        raise fail(
            origin, label, "subdomain", f"{subdomain!r} must not contain '.' or '*'"
        )
    return ProxyConfig(headers=tuple(pairs["header_"]), **fields)
