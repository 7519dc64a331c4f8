# -*- test-case-name: tests.unit.test_config_convert -*-
"""
frps.ini and frpc.ini text turned into frp's v1 format (TOML, YAML or
JSON) that frp, and labrelay, read the same way.

This module owns the conversion, key by key through the table of
:mod:`.v1keys` (the same table the v1 reader uses): ``[common]`` keys
become their v1 keys, each proxy section one entry of ``[[proxies]]``
(a ``range:`` section one per port, dotted sections with what they inherit,
included files inline), visitor sections ``[[visitors]]``.  Keys the INI
reader ignores (unknown, obsolete, the other program's) are left out.

``{{ .Envs.X }}`` templates stay templates: each action is set aside
before the INI text is read and written back into the output, unquoted
where the value is a number or a boolean, so a converted file does not
hold what the environment had when it was converted.  Converting does not
check the settings: load the INI file for that.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

import attrs
import tomli_w
import yaml

from .client import CLIENT_OWN_KEYS, included_files
from .errors import ConfigError, IniError, Warnings
from .ini import (
    DEFAULT_SECTION,
    IniDocument,
    parse_go_bool,
    parse_go_int,
    parse_port_ranges,
    split_list,
)
from .schema import MAX_RANGE_PORTS
from .server import SERVER_OWN_KEYS
from .v1keys import (
    AUTH_SCOPES,
    CLIENT_V1_KEYS,
    PROXY_V1_KEYS_WITH_PLUGINS,
    SERVER_V1_KEYS,
    VISITOR_V1_KEYS,
    V1Key,
    keys_by_ini,
    own_keys,
)
from .values import read_file

#: the output formats
V1_FORMATS = ("toml", "yaml", "json")

_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_MARK = "@@labrelay-{kind}-{index}@@"
_RAW_MARK = re.compile(r"[\"']@@labrelay-raw-(\d+)@@[\"']")
_TEMPLATE_MARK = re.compile(r"@@labrelay-tpl-(\d+)@@")


class _Templates:
    """The template actions of a text, set aside as marks and put back."""

    def __init__(self) -> None:
        self.actions: list[str] = []
        self.raw: list[str] = []

    def protect(self, text: str) -> str:
        def mark(match) -> str:
            self.actions.append(match.group(0))
            return _MARK.format(kind="tpl", index=len(self.actions) - 1)

        return _ACTION.sub(mark, text)

    def has_marks(self, value: str) -> bool:
        return "@@labrelay-tpl-" in value

    def raw_value(self, value: str) -> str:
        """A mark for a value written unquoted (a templated number)."""
        self.raw.append(value)
        return _MARK.format(kind="raw", index=len(self.raw) - 1)

    def restore(self, text: str) -> str:
        """*text* (as dumped) with the marks replaced by what they stand
        for: a raw value without the quotes the writer put around it."""
        text = _RAW_MARK.sub(lambda m: self.raw[int(m.group(1))], text)
        return _TEMPLATE_MARK.sub(lambda m: self.actions[int(m.group(1))], text)


class _Converter:
    def __init__(self, source: str, templates: _Templates) -> None:
        self.source = source
        self.templates = templates

    def value(self, key: V1Key, text: str, section: str, ini: str):
        """The v1 value of an INI value of *key*'s type."""
        if self.templates.has_marks(text):
            if key.kind == "str":
                return text
            if key.kind == "list":
                return list(split_list(text))
            return self.templates.raw_value(text)
        try:
            if key.kind == "bool":
                return parse_go_bool(text)
            if key.kind == "int":
                return parse_go_int(text)
            if key.kind == "list":
                return list(split_list(text))
            if key.kind == "ports":
                return [
                    {"single": low} if low == high else {"start": low, "end": high}
                    for low, high in parse_port_ranges(text).ranges
                ]
        except ValueError as e:
            raise ConfigError(f"{self.source}: [{section}] {ini}: {e}") from None
        return text

    def section(
        self,
        entries,
        by_ini: dict[str, V1Key],
        section: str,
        out: dict,
        ptype: Optional[str] = None,
    ) -> None:
        """Set the v1 keys of one section's INI *entries* in *out*."""
        scopes = []
        for ini, entry in entries.items():
            if entry.value == "":
                continue
            key = by_ini.get(ini)
            if key is None:
                key = next(
                    (
                        k
                        for k in by_ini.values()
                        if k.kind == "map" and ini.startswith(k.ini)
                    ),
                    None,
                )
                if key is None or not ini[len(key.ini) :]:
                    continue
                if ptype is not None and key.types and ptype not in key.types:
                    continue
                _set(out, f"{key.path}.{ini[len(key.ini) :]}", entry.value)
                continue
            if ptype is not None and key.types and ptype not in key.types:
                continue
            if key.kind == "scopes":
                if parse_go_bool(entry.value):
                    scopes.append(ini)
                _set(out, key.path, [])
            elif key.kind == "table":
                pass
            elif key.kind != "map":
                _set(out, key.path, self.value(key, entry.value, section, ini))
        if scopes:
            _set(
                out,
                "auth.additionalScopes",
                [s for s, ini in AUTH_SCOPES.items() if ini in scopes],
            )
        elif _get(out, "auth.additionalScopes") == []:
            _drop(out, "auth.additionalScopes")


def _set(out: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        out = out.setdefault(part, {})
    out[last] = value


def _get(out: dict, path: str):
    for part in path.split("."):
        if not isinstance(out, dict) or part not in out:
            return None
        out = out[part]
    return out


def _drop(out: dict, path: str) -> None:
    *parents, last = path.split(".")
    tables = [out]
    for part in parents:
        tables.append(tables[-1][part])
    del tables[-1][last]
    for depth in range(len(parents), 0, -1):
        if not tables[depth]:
            del tables[depth - 1][parents[depth - 1]]


def _read(text: str, source: str, templates: _Templates, doc=None) -> IniDocument:
    doc = doc or IniDocument()
    try:
        doc.feed(templates.protect(text), source)
    except IniError as e:
        raise ConfigError(f"{source}: {e}") from None
    if "common" not in doc.sections:
        raise ConfigError(
            f"{source}: [common]: section is missing; frp requires a [common] section"
        )
    return doc


#: What each entry of these arrays is written as in TOML: a ``[[name]]``
#: table, as frp's documentation writes them, whatever its length.
_TABLE_ARRAYS = ("proxies", "visitors", "httpPlugins")


def _dump_toml(data: dict) -> str:
    """*data* as TOML, with each entry of :data:`_TABLE_ARRAYS` as its own
    ``[[name]]`` table (tomli-w writes short ones inline)."""
    rest = {k: v for k, v in data.items() if k not in _TABLE_ARRAYS}
    chunks = [tomli_w.dumps(rest)] if rest else []
    for name in _TABLE_ARRAYS:
        for entry in data.get(name, ()):
            # One table under a name of ours, whose headers then become
            # the array's: "[t]" -> "[[proxies]]", "[t.x]" -> "[proxies.x]".
            text = tomli_w.dumps({"t": entry})
            text = re.sub(r"^\[t\]$", f"[[{name}]]", text, count=1, flags=re.M)
            text = re.sub(r"^(\[\[?)t\.", rf"\g<1>{name}.", text, flags=re.M)
            chunks.append(text)
    return "\n".join(chunk.rstrip("\n") + "\n" for chunk in chunks)


def _dump(data: dict, fmt: str, templates: _Templates) -> str:
    if fmt == "toml":
        text = _dump_toml(data)
    elif fmt == "yaml":
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    elif fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(V1_FORMATS)}")
    return templates.restore(text)


def convert_server_config(text: str, source: str = "frps.ini", *, fmt="toml") -> str:
    """frps.ini *text* as an frps v1 file in *fmt* (``toml``, ``yaml``,
    ``json``)."""
    templates = _Templates()
    doc = _read(text, source, templates)
    keys = SERVER_V1_KEYS + own_keys(SERVER_OWN_KEYS)
    converter = _Converter(source, templates)
    out: dict = {}
    common = doc.sections["common"].entries
    converter.section(common, keys_by_ini(keys), "common", out)
    tls_mode = common.get("dashboard_tls_mode")
    if tls_mode is None or not _true(tls_mode.value):
        # frp reads the dashboard's certificate only with TLS on
        if isinstance(out.get("webServer"), dict):
            out["webServer"].pop("tls", None)
    else:
        _set(out, "webServer.tls", _get(out, "webServer.tls") or {})
    plugins = []
    for name, section in doc.sections.items():
        if not name.startswith("plugin."):
            continue
        plugin = {"name": name[len("plugin.") :]}
        for ini, v1 in (("addr", "addr"), ("path", "path"), ("ops", "ops")):
            entry = section.entries.get(ini)
            if entry is not None:
                plugin[v1] = (
                    list(split_list(entry.value)) if ini == "ops" else entry.value
                )
        verify = section.entries.get("tls_verify")
        if verify is not None and verify.value:
            plugin["tlsVerify"] = _true(verify.value)
        plugins.append(plugin)
    if plugins:
        out["httpPlugins"] = plugins
    return _dump(out, fmt, templates)


def _true(text: str) -> bool:
    try:
        return parse_go_bool(text)
    except ValueError:
        return False


def convert_client_config(
    text: str,
    source: str = "frpc.ini",
    *,
    fmt: str = "toml",
    base_dir: Optional[str] = None,
) -> str:
    """
    frpc.ini *text* as an frpc v1 file in *fmt* (``toml``, ``yaml``,
    ``json``).  The proxies of the files ``includes`` names (relative to
    *base_dir*, by default the directory of *source*) are written inline,
    since a v1 file can include only v1 files.
    """
    templates = _Templates()
    doc = _read(text, source, templates)
    keys = CLIENT_V1_KEYS + own_keys(CLIENT_OWN_KEYS)
    converter = _Converter(source, templates)
    out: dict = {}
    common = dict(doc.sections["common"].entries)
    includes = common.pop("includes", None)
    converter.section(common, keys_by_ini(keys), "common", out)
    heartbeat = common.get("heartbeat_interval")
    tcp_mux = common.get("tcp_mux")
    if (heartbeat is None or heartbeat.value == "") and (
        tcp_mux is None or _true(tcp_mux.value) or tcp_mux.value == ""
    ):
        # frpc.ini's heartbeat_interval defaults to 30; v1's to -1 (off)
        # with tcpMux
        _set(out, "transport.heartbeatInterval", 30)
    if includes is not None and includes.value:
        base_dir = base_dir if base_dir is not None else os.path.dirname(source)
        for pattern in split_list(includes.value):
            for file in included_files(
                pattern, base_dir or os.curdir, source, Warnings()
            ):
                file, included = read_file(file)
                common_before = doc.sections.pop("common")
                doc.feed(templates.protect(included), file)
                doc.sections["common"] = common_before
    proxies, visitors = _client_sections(doc, converter)
    if proxies:
        out["proxies"] = proxies
    if visitors:
        out["visitors"] = visitors
    return _dump(out, fmt, templates)


def _client_sections(doc: IniDocument, converter: _Converter):
    proxy_keys = keys_by_ini(PROXY_V1_KEYS_WITH_PLUGINS)
    visitor_keys = keys_by_ini(VISITOR_V1_KEYS)
    proxies, visitors, generated = [], [], set()
    for name in list(doc.sections):
        if name in (DEFAULT_SECTION, "common"):
            continue
        entries = _inherited(doc, name)
        views = (
            _range_views(doc, name, entries, generated, converter)
            if name.startswith("range:")
            else [(name, entries)]
        )
        for proxy_name, proxy_entries in views:
            role = proxy_entries.get("role")
            ptype_entry = proxy_entries.get("type")
            ptype = ptype_entry.value if ptype_entry and ptype_entry.value else "tcp"
            item = {"name": proxy_name, "type": ptype}
            rest = {k: e for k, e in proxy_entries.items() if k not in ("role", "type")}
            if role is not None and role.value == "visitor":
                converter.section(rest, visitor_keys, name, item, ptype)
                visitors.append(item)
            else:
                converter.section(rest, proxy_keys, name, item, ptype)
                plugin = item.get("plugin")
                if plugin is not None and "type" in plugin:
                    item["plugin"] = {"type": plugin["type"], **plugin}
                proxies.append(item)
    return proxies, visitors


def _inherited(doc: IniDocument, name: str) -> dict:
    """A section's entries with those of its dotted parents it does not
    set (go-ini's parent sections; ``meta_*`` and ``header_*`` pairs are
    read from the section itself only)."""
    own = doc.sections[name].entries
    entries: dict = {}
    cut = name
    while "." in cut:
        cut = cut[: cut.rfind(".")]
        parent = doc.sections.get(cut)
        for key, entry in parent.entries.items() if parent else ():
            if not key.startswith(("meta_", "header_")):
                entries.setdefault(key, entry)
    return {**entries, **own}


def _range_views(doc, name, entries, generated, converter: _Converter):
    """One (name, entries) per port of a ``range:`` section."""
    ports = []
    for key in ("local_port", "remote_port"):
        entry = entries.get(key)
        if entry is None or entry.value == "":
            raise ConfigError(
                f"{converter.source}: [{name}] {key}: a range: section needs "
                f"local_port and remote_port"
            )
        if converter.templates.has_marks(entry.value):
            raise ConfigError(
                f"{converter.source}: [{name}] {key}: a range: section's ports "
                f"cannot be converted while they are templates"
            )
        try:
            written = parse_port_ranges(entry.value)
        except ValueError as e:
            raise ConfigError(f"{converter.source}: [{name}] {key}: {e}") from None
        if sum(high - low + 1 for low, high in written.ranges) > MAX_RANGE_PORTS:
            raise ConfigError(f"{converter.source}: [{name}] {key}: too many ports")
        ports.append((entry, written.in_order()))
    (local, local_ports), (remote, remote_ports) = ports
    if len(local_ports) != len(remote_ports):
        raise ConfigError(
            f"{converter.source}: [{name}] remote_port: lists {len(remote_ports)} "
            f"ports but local_port lists {len(local_ports)}; the counts must match"
        )
    prefix = name[len("range:") :].strip()
    views = []
    for index, (local_port, remote_port) in enumerate(zip(local_ports, remote_ports)):
        proxy_name = f"{prefix}_{index}"
        if proxy_name in doc.sections or proxy_name in generated:
            raise ConfigError(
                f"{converter.source}: [{name}]: generated proxy name "
                f"{proxy_name!r} is already used"
            )
        generated.add(proxy_name)
        view = dict(entries)
        view["local_port"] = attrs.evolve(local, value=str(local_port))
        view["remote_port"] = attrs.evolve(remote, value=str(remote_port))
        views.append((proxy_name, view))
    return views
