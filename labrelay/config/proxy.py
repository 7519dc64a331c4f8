# -*- test-case-name: tests.unit.test_config -*-
"""
frpc.ini's proxy sections: the proxy model (:class:`ProxyConfig`), the key
tables generated from it (:data:`PROXY_KEYS`, :data:`TCP_PROXY_KEYS`,
:data:`HTTP_PROXY_KEYS`, :data:`OTHER_PROXY_KEYS`), and the reading of
every section that is not ``[common]``: proxy sections with their dotted
parents, ``range:`` sections expanded into one proxy per port, and the
``start`` filter.  :mod:`~labrelay.config.client` calls
:func:`read_proxies` once ``[common]`` and the included files are read.
"""

from __future__ import annotations

from typing import Optional

import attrs

from .errors import Warnings, fail
from .ini import DEFAULT_SECTION, IniDocument, Section
from .schema import (
    MAX_RANGE_PORTS,
    NOT_YET_PROXY_TYPES,
    OTHER_TYPE_PROXY_KEYS,
    PROXY_NOT_YET,
    PROXY_NOT_YET_PREFIXES,
    SUPPORTED_PROXY_TYPES,
    key_table,
    setting,
)
from .values import at_default, convert, did_you_mean
from .visitor import SUPPORTED_VISITOR_TYPES

Pairs = tuple[tuple[str, str], ...]

#: proxy types routed by name (custom_domains, subdomain)
_NAMED = ("http", "https", "tcpmux")
#: the multiplexers of tcpmux proxies (frp has one)
TCPMUX_MULTIPLEXERS = ("httpconnect",)


@attrs.frozen
class ProxyConfig:
    """One proxy section of frpc.ini."""

    name: str
    section: str = attrs.field(
        default=attrs.Factory(lambda self: self.name, takes_self=True)
    )
    type: str = setting("tcp")
    local_ip: str = setting("127.0.0.1")
    local_port: int = setting(0, "port")
    remote_port: int = setting(0, "port", proxy_types=("tcp", "udp"))
    use_encryption: bool = setting(False)
    use_compression: bool = setting(False)
    custom_domains: tuple[str, ...] = setting((), proxy_types=_NAMED)
    subdomain: str = setting("", proxy_types=_NAMED)
    locations: tuple[str, ...] = setting((), proxy_types=("http",))
    http_user: str = setting("", proxy_types=("http", "tcpmux"))
    http_pwd: str = setting("", proxy_types=("http", "tcpmux"))
    host_header_rewrite: str = setting("", proxy_types=("http",))
    route_by_http_user: str = setting("", proxy_types=("http", "tcpmux"))
    multiplexer: str = setting("", proxy_types=("tcpmux",))
    sk: str = setting("", proxy_types=("stcp",))
    allow_users: tuple[str, ...] = setting((), proxy_types=("stcp",))
    headers: Pairs = ()
    metas: Pairs = ()


#: Proxy keys labrelay implements, for every type (plus meta_*); ``role``
#: has no field: it decides whether the section is a proxy at all.
PROXY_KEYS = {**key_table(ProxyConfig, proxy_type=""), "role": "str"}
TCP_PROXY_KEYS = key_table(ProxyConfig, proxy_type="tcp")
#: http proxy keys labrelay implements (plus header_*).
HTTP_PROXY_KEYS = key_table(ProxyConfig, proxy_type="http")
#: the keys of each proxy type besides PROXY_KEYS
TYPE_PROXY_KEYS = {
    kind: key_table(ProxyConfig, proxy_type=kind) for kind in SUPPORTED_PROXY_TYPES
}
#: frp keys of other proxy types and of visitors: ignored where they do not
#: apply, as frp ignores them.
OTHER_PROXY_KEYS = OTHER_TYPE_PROXY_KEYS.union(*TYPE_PROXY_KEYS.values())


def read_proxies(
    doc: IniDocument,
    common: dict,
    source: str,
    warnings: Warnings,
    other_names=(),
) -> tuple[ProxyConfig, ...]:
    """Every started proxy in file order (ranges expanded in
    place); ``start`` may also name *other_names* (visitors read
    elsewhere)."""
    start = common.get("start", ())
    user = common.get("user", "")
    proxies = []
    loaded = set(other_names)
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
        vtype = get("type", default="")
        if vtype not in SUPPORTED_VISITOR_TYPES:  # stcp: read_visitors
            warnings.add(
                origin,
                label,
                None,
                f"visitor type {vtype or '(none)'} is not supported by labrelay "
                "yet; section skipped",
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
    stcp = ptype == "stcp"
    keys = {**PROXY_KEYS, **TYPE_PROXY_KEYS[ptype]}
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
    if stcp:
        sk = get("sk", default="")
        if not sk:
            raise fail(
                origin, label, "sk", "required: the secret key of the stcp proxy"
            )
        allow_users = get("allow_users", "list", ())
        return ProxyConfig(sk=sk, allow_users=tuple(allow_users), **fields)
    if ptype in ("tcp", "udp"):
        return ProxyConfig(remote_port=get("remote_port", "port", 0), **fields)
    for key, kind in TYPE_PROXY_KEYS[ptype].items():
        value = get(key, kind)
        if value is not None:
            fields[key] = value
    subdomain = fields.get("subdomain", "")
    if not fields.get("custom_domains") and not subdomain:
        raise fail(
            origin,
            label,
            "custom_domains",
            f"{'a' if ptype == 'tcpmux' else 'an'} {ptype} proxy needs "
            "custom_domains or subdomain",
        )
    if ptype == "tcpmux" and fields.get("multiplexer") not in TCPMUX_MULTIPLEXERS:
        raise fail(
            origin,
            label,
            "multiplexer",
            f"must be one of {', '.join(TCPMUX_MULTIPLEXERS)}, "
            f"not {fields.get('multiplexer', '')!r}",
        )
    if "." in subdomain or "*" in subdomain:
        raise fail(
            origin, label, "subdomain", f"{subdomain!r} must not contain '.' or '*'"
        )
    return ProxyConfig(headers=tuple(pairs.get("header_", ())), **fields)
