# -*- test-case-name: tests.unit.test_config_v1 -*-
"""
frp's v1 config files (frps.toml, frpc.toml, and their YAML and JSON
forms) read into the same models as the INI files.

This module owns the meaning of a parsed v1 document: it checks each key
against the table of :mod:`.v1keys` (strict mode: a key frp does not know
is an error with a suggestion, as frp's ``--strict_config``), checks the
value's type, and writes the value as the INI entry of the same key, so
that the INI layer's checks and defaults (:mod:`.values`, :mod:`.server`,
:mod:`.client`, :mod:`.proxy`) apply unchanged.  The problems they find
are named back in the v1 file's words (:class:`Naming`): table and key as
the user wrote them, and the line.  The text itself (format, templates,
syntax, lines) is :mod:`.v1text`'s.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Optional

import attrs

from .client import (
    CLIENT_OWN_KEYS,
    ClientConfig,
    client_from_document,
    included_files,
    read_client_common,
)
from .errors import ConfigError, Warnings
from .ini import Entry, IniDocument, Section
from .schema import SUPPORTED_PROXY_TYPES
from .server import (
    SERVER_OWN_KEYS,
    ServerConfig,
    read_server_common,
    server_from_values,
)
from .v1keys import (
    AUTH_SCOPES,
    CLIENT_V1_KEYS,
    HTTP_PLUGIN_V1_KEYS,
    PROXY_V1_KEYS_WITH_PLUGINS,
    PROXY_V1_TYPES,
    SERVER_V1_KEYS,
    VISITOR_V1_KEYS_WITH_PLUGINS,
    VISITOR_V1_TYPES,
    V1Key,
    keys_by_ini,
    keys_by_path,
    own_keys,
    rename_ini_words,
)
from .v1text import KeyPath, V1Text, config_format, parse_v1_text, type_name
from .values import read_file
from .visitor import SUPPORTED_VISITOR_TYPES

NOT_YET = "not supported by labrelay yet; ignored"

#: what each v1 type must be, in the messages
_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "bool": "a boolean (true or false)",
    "list": "an array of strings",
    "ports": "an array of {start, end} or {single} tables",
    "scopes": 'an array of "HeartBeats" and "NewWorkConns"',
    "map": "a table of strings",
    "flags": "a table of booleans",
    "table": "a table",
}

#: INI wording of the checks, as a v1 file would say it
_V1_PHRASES = (
    ("; section skipped", "; skipped"),
    ("; section ignored", "; ignored"),
    ("no section named", "no proxy named"),
)


def server_v1_keys() -> tuple[V1Key, ...]:
    """Every key of frps's v1 files, with labrelay's own."""
    return SERVER_V1_KEYS + own_keys(SERVER_OWN_KEYS)


def client_v1_keys() -> tuple[V1Key, ...]:
    """Every key of frpc's v1 files besides [[proxies]] and [[visitors]],
    with labrelay's own."""
    return CLIENT_V1_KEYS + own_keys(CLIENT_OWN_KEYS)


@attrs.frozen
class Place:
    """Where something is in a v1 file: its name there, and its line."""

    label: str
    line: Optional[int] = None

    def __str__(self) -> str:
        return self.label + (f" (line {self.line})" if self.line else "")


class Naming:
    """
    The v1 names of the places the INI layer reports as (file, section,
    key): ``[common] dashboard_port`` is ``webServer.port (line 12)``,
    ``[ssh] local_port`` is ``proxies[0] "ssh" localPort (line 30)``.
    """

    def __init__(self, common_keys, proxy_keys=()) -> None:
        self.common_by_ini = keys_by_ini(common_keys)
        self.proxy_by_ini = keys_by_ini(proxy_keys)
        self.places: dict[tuple[str, str, Optional[str]], Place] = {}
        self.sections: dict[tuple[str, str], Place] = {}

    def place(self, source: str, section: str, key: Optional[str]) -> Place:
        """The v1 place of an INI (section, key) of *source*."""
        found = self.places.get((source, section, key))
        if found is not None:
            return found
        if section == "common":
            v1 = self.common_by_ini.get(key) if key else None
            return Place(v1.path if v1 else key or "")
        owner = self.sections.get((source, section))
        if owner is None:
            return Place(" ".join(part for part in (section, key) if part))
        if key is None:
            return owner
        v1 = self.proxy_by_ini.get(key)
        return Place(f"{owner.label} {v1.path if v1 else key}", owner.line)

    def render(self, source: str, section: str, key: Optional[str], what: str) -> str:
        """One message, in the v1 file's names."""
        by_ini = self.common_by_ini if section == "common" else self.proxy_by_ini
        what = rename_ini_words(what, by_ini)
        for ini_words, v1_words in _V1_PHRASES:
            what = what.replace(ini_words, v1_words)
        place = self.place(source, section, key)
        return f"{source}: {place}: {what}" if place.label else f"{source}: {what}"

    def error(self, error: ConfigError) -> ConfigError:
        """*error* named in the v1 file's words (if the INI layer made it)."""
        if error.parts is None:
            return error
        renamed = ConfigError(self.render(*error.parts))
        renamed.parts = error.parts
        renamed.warnings = error.warnings
        return renamed


class FlatDocument(IniDocument):
    """The proxies of a v1 file as INI sections: a proxy name with a dot
    has no parent section to inherit keys from."""

    def lookup(self, section: str, key: str) -> Optional[Entry]:
        found = self.sections.get(section)
        return None if found is None else found.entries.get(key)


@attrs.frozen
class Found:
    """A key of the table, found in a file, with its value."""

    key: V1Key
    value: object
    path: KeyPath
    place: Place


def _ini_text(kind: str, value) -> str:
    """A typed v1 value written as the INI layer reads it back."""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "int":
        return str(value)
    if kind == "list":
        return ",".join(
            item.replace("\\", "\\\\").replace(",", "\\,") for item in value
        )
    return value


def _is_unset(value) -> bool:
    """frp treats a zero value (but false) as not written: its default
    applies."""
    return value is None or (not isinstance(value, bool) and value in (0, "", [], {}))


class FileReader:
    """The keys of one v1 file, checked and written as INI entries."""

    def __init__(
        self, text: V1Text, strict: bool, warnings: Warnings, naming: Naming
    ) -> None:
        self.text = text
        self.source = text.source
        self.strict = strict
        self.warnings = warnings
        self.naming = naming

    # -- messages ------------------------------------------------------------

    def place(self, path: KeyPath, label: str) -> Place:
        return Place(label, self.text.lines.line_of(path))

    def fail(self, place: Place, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {place}: {what}")

    def warn(self, place: Place, what: str) -> None:
        self.warnings.add(self.source, str(place), None, what)

    def unknown(
        self, place: Place, name: str, known, what: str = "unknown key", value=None
    ):
        """A key frp's schema does not have there: an error in strict
        mode, else a warning."""
        what += _did_you_mean(name, known, value)
        if self.strict:
            raise self.fail(place, what)
        self.warn(place, f"{what}; ignored")

    # -- tables of keys ------------------------------------------------------

    def walk(
        self,
        mapping: dict,
        table: Mapping[str, V1Key],
        path: KeyPath = (),
        label: str = "",
        prefix: str = "",
        skip: tuple[str, ...] = (),
        elsewhere: Mapping[str, str] = {},
    ) -> list[Found]:
        """
        The keys of *table* found in *mapping* (nested tables followed as
        dotted paths), each type-checked; a key not in the table is
        :meth:`unknown` (or, if *elsewhere* has it, not used by this
        proxy or visitor type: *elsewhere* maps it to the message).
        """
        found: list[Found] = []
        for name, value in mapping.items():
            here = path + (name,)
            if not isinstance(name, str):
                raise self.fail(
                    self.place(here, label + str(name)), "a key must be a string"
                )
            dotted = f"{prefix}.{name}" if prefix else name
            if not prefix and name in skip:
                continue
            place = self.place(here, label + dotted)
            key = table.get(dotted)
            if key is not None:
                self.check_type(key, value, place)
                found.append(Found(key, value, here, place))
                if key.kind == "table" and isinstance(value, dict):
                    found += self.walk(
                        value, table, here, label, dotted, elsewhere=elsewhere
                    )
                continue
            if isinstance(value, dict) and any(
                known.startswith(dotted + ".") for known in (*table, *elsewhere)
            ):
                found += self.walk(
                    value, table, here, label, dotted, elsewhere=elsewhere
                )
            elif dotted in elsewhere:
                self.unknown(place, dotted, table, elsewhere[dotted])
            else:
                self.unknown(place, dotted, table, value=value)
        return found

    def check_type(self, key: V1Key, value, place: Place) -> None:
        """Refuse a value of the wrong type (None: not written)."""
        kind = key.kind
        if value is None or kind == "any":
            return
        if kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "str":
            ok = isinstance(value, str)
        elif kind in ("list", "scopes"):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif kind == "ports":
            ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        elif kind == "map":
            ok = isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
        elif kind == "flags":
            ok = isinstance(value, dict) and all(
                isinstance(v, bool) for v in value.values()
            )
        else:
            ok = isinstance(value, dict)
        if not ok:
            raise self.fail(
                place, f"expected {_EXPECTED[kind]}, got {type_name(value)}"
            )

    def entries(
        self, found: list[Found], section: str, *, quiet: bool = False
    ) -> dict[str, Entry]:
        """
        The INI entries of the found keys of one section (``common`` or a
        proxy's name), with their v1 places registered; a warning for each
        v1-only key that is set (none with *quiet*: the proxy is skipped).
        """
        entries: dict[str, Entry] = {}
        ignored_tables: list[str] = []

        def add(ini: str, text: str, place: Place) -> None:
            entries[ini] = Entry(text, self.source, place.line or 0)
            self.naming.places[(self.source, section, ini)] = place

        for item in found:
            key, value, place = item.key, item.value, item.place
            if key.path in ("name", "httpPlugins") or any(
                key.path.startswith(t + ".") for t in ignored_tables
            ):
                # the proxy's name is its section; server plugins are
                # warned about one by one
                continue
            if key.ini is None:
                if key.kind == "table" and value is not None:
                    ignored_tables.append(key.path)
                if not quiet and self._set_v1_only(key, value):
                    self.warn(place, NOT_YET)
            elif key.kind == "scopes":
                for scope in value or ():
                    if scope not in AUTH_SCOPES:
                        raise self.fail(
                            place,
                            f"unknown scope {scope!r}; frp accepts "
                            f"{', '.join(AUTH_SCOPES)}",
                        )
                if value:
                    for scope, ini in AUTH_SCOPES.items():
                        add(ini, "true" if scope in value else "false", place)
            elif key.kind == "map":
                for name, text in (value or {}).items():
                    label = f"{place.label}.{name}"
                    add(key.ini + name, text, self.place(item.path + (name,), label))
            elif key.kind == "table":
                if value is not None:
                    add(key.ini, "true", place)
            elif key.kind == "ports":
                if value:
                    add(key.ini, self._port_ranges(value, item.path, place), place)
            elif not _is_unset(value):
                add(key.ini, _ini_text(key.kind, value), place)
        return entries

    @staticmethod
    def _set_v1_only(key: V1Key, value) -> bool:
        if key.kind == "table":
            return value is not None
        return not _is_unset(value) and value != key.default

    def _port_ranges(self, ranges: list, path: KeyPath, place: Place) -> str:
        """allowPorts as the INI port range text."""
        written = []
        for index, item in enumerate(ranges):
            here = self.place(path + (index,), f"{place.label}[{index}]")
            for name, number in item.items():
                if name not in ("start", "end", "single"):
                    self.unknown(here, name, ("start", "end", "single"))
                elif isinstance(number, bool) or not isinstance(number, int):
                    raise self.fail(
                        here, f"{name}: expected an integer, got {type_name(number)}"
                    )
            if item.get("single"):
                written.append(str(item["single"]))
            elif item.get("end"):
                written.append(f"{item.get('start', 0)}-{item['end']}")
            elif item.get("start"):
                written.append(str(item["start"]))
        return ",".join(written)

    # -- the sides -----------------------------------------------------------

    def common(self, keys: tuple[V1Key, ...], skip: tuple[str, ...] = ()) -> Section:
        """The top-level keys as a ``[common]`` section."""
        found = self.walk(self.text.data, keys_by_path(keys), skip=skip)
        section = Section("common", self.source, 1)
        section.entries = self.entries(found, "common")
        for item in found:
            if item.key.path == "httpPlugins":
                self._http_plugins(item)
        return section

    def _http_plugins(self, item: Found) -> None:
        if not isinstance(item.value, list):
            raise self.fail(
                item.place, f"expected an array of tables, got {type_name(item.value)}"
            )
        for index, plugin in enumerate(item.value):
            here = self.place(item.path + (index,), f"httpPlugins[{index}]")
            if not isinstance(plugin, dict):
                raise self.fail(here, f"expected a table, got {type_name(plugin)}")
            for name in plugin:
                if name not in HTTP_PLUGIN_V1_KEYS:
                    self.unknown(
                        self.place(item.path + (index, name), f"{here.label}.{name}"),
                        name,
                        HTTP_PLUGIN_V1_KEYS,
                    )
            label = f'{here.label} "{plugin.get("name", "")}"'
            self.warn(
                Place(label, here.line),
                "server plugins are not supported by labrelay yet; ignored",
            )

    def items(self, kind: str) -> list[tuple[int, dict, Place]]:
        """The entries of [[proxies]] or [[visitors]]: (index, table, place
        of the entry)."""
        value = self.text.data.get(kind)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(
                self.place((kind,), kind),
                f"expected an array of tables, got {type_name(value)}",
            )
        items = []
        for index, item in enumerate(value):
            place = self.place((kind, index), f"{kind}[{index}]")
            if not isinstance(item, dict):
                raise self.fail(place, f"expected a table, got {type_name(item)}")
            items.append((index, item, place))
        return items

    def _name_and_type(
        self, item: dict, index: int, place: Place, kind: str, types
    ) -> tuple[str, str]:
        name, ptype = item.get("name"), item.get("type")
        for key, value in (("name", name), ("type", ptype)):
            if not isinstance(value, str) or not value:
                here = self.place((kind, index, key), f"{place.label} {key}")
                got = type_name(value) if value is not None else "nothing"
                raise self.fail(here, f"required: a non-empty string, got {got}")
        if ptype not in types:
            here = self.place((kind, index, "type"), f"{place.label} type")
            raise self.fail(
                here,
                f"unknown {kind.rstrip('s').replace('proxie', 'proxy')} type "
                f"{ptype!r}; frp has {', '.join(types)}",
            )
        return name, ptype

    def proxies(self, doc: IniDocument) -> None:
        """Each enabled [[proxies]] entry as a proxy section of *doc*."""
        table = keys_by_path(PROXY_V1_KEYS_WITH_PLUGINS)
        for index, item, place in self.items("proxies"):
            name, ptype = self._name_and_type(
                item, index, place, "proxies", PROXY_V1_TYPES
            )
            label = f'proxies[{index}] "{name}" '
            own = {
                p: k for p, k in table.items() if k.types is None or ptype in k.types
            }
            elsewhere = {
                p: f"not a key of {ptype} proxies" for p in table if p not in own
            }
            found = self.walk(item, own, ("proxies", index), label, elsewhere=elsewhere)
            if item.get("enabled") is False:
                continue
            if name in doc.sections:
                raise self.fail(place, f"proxy name {name!r} is duplicated")
            if name.startswith("range:"):
                raise self.fail(
                    place, "a proxy name starting with 'range:' is not supported"
                )
            plugin = (item.get("plugin") or {}).get("type")
            skipped = ptype not in SUPPORTED_PROXY_TYPES or bool(plugin)
            section = Section(name, self.source, place.line or 0)
            self.naming.sections[(self.source, name)] = Place(label.strip(), place.line)
            section.entries = self.entries(found, name, quiet=skipped)
            section.entries.pop("type", None)
            section.entries["type"] = Entry(ptype, self.source, place.line or 0)
            doc.sections[name] = section

    def visitors(self, seen: set, start: tuple[str, ...], doc: IniDocument) -> None:
        """[[visitors]] entries are checked; stcp visitors become visitor
        sections of *doc* (``role = visitor``), the others are skipped with
        a warning."""
        table = keys_by_path(VISITOR_V1_KEYS_WITH_PLUGINS)
        for index, item, place in self.items("visitors"):
            name, vtype = self._name_and_type(
                item, index, place, "visitors", VISITOR_V1_TYPES
            )
            own = {
                p: k for p, k in table.items() if k.types is None or vtype in k.types
            }
            elsewhere = {
                p: f"not a key of {vtype} visitors" for p in table if p not in own
            }
            label = f'visitors[{index}] "{name}" '
            found = self.walk(
                item, own, ("visitors", index), label, elsewhere=elsewhere
            )
            if name in seen:
                raise self.fail(place, f"visitor name {name!r} is duplicated")
            seen.add(name)
            if item.get("enabled") is False or (start and name not in start):
                continue
            plugin = (item.get("plugin") or {}).get("type")
            if vtype in SUPPORTED_VISITOR_TYPES and not plugin:
                if name in doc.sections:
                    raise self.fail(
                        place, f"visitor name {name!r} is also a proxy's name"
                    )
                section = Section(name, self.source, place.line or 0)
                self.naming.sections[(self.source, name)] = Place(
                    label.strip(), place.line
                )
                section.entries = self.entries(found, name)
                line = place.line or 0
                section.entries["role"] = Entry("visitor", self.source, line)
                section.entries["type"] = Entry(vtype, self.source, line)
                doc.sections[name] = section
                continue
            self.warn(
                Place(label.strip(), place.line),
                f"{vtype} visitors are not supported by labrelay yet; skipped"
                if not plugin
                else f"visitor plugin {plugin} is not supported by labrelay yet; "
                "skipped",
            )


def _did_you_mean(name: str, known, value=None) -> str:
    """
    `` (did you mean 'bindPort'?)`` for a near miss, else "".  For an
    unknown table (*value* a dict), a known key that ends with one of its
    dotted keys (``tls.force``: ``transport.tls.force``) is suggested.
    """
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.7)
    if close:
        return f" (did you mean {lowered[close[0]]!r}?)"
    for leaf in _leaves(name, value) if isinstance(value, dict) else ():
        ending = "." + leaf.lower()
        for low, key in lowered.items():
            if low.endswith(ending):
                return f" (did you mean {key!r} for {leaf!r}?)"
    return ""


def _leaves(prefix: str, table: dict) -> list[str]:
    """The dotted keys of the values in a nested *table*, *prefix* first."""
    leaves = []
    for name, value in table.items():
        dotted = f"{prefix}.{name}"
        leaves += _leaves(dotted, value) if isinstance(value, dict) else [dotted]
    return leaves


def parse_server_v1(
    text: str,
    source: str,
    environ: Optional[Mapping[str, str]] = None,
    *,
    fmt: str = "toml",
    strict: bool = True,
) -> ServerConfig:
    """Parse an frps v1 file (TOML, YAML or JSON text) into a
    :class:`ServerConfig`."""
    keys = server_v1_keys()
    naming = Naming(keys)
    warnings = Warnings(render=naming.render)
    try:
        with warnings.kept_on_error():
            v1 = parse_v1_text(text, source, fmt, environ)
            reader = FileReader(v1, strict, warnings, naming)
            values = read_server_common(reader.common(keys), warnings)
            return server_from_values(values, source, warnings)
    except ConfigError as e:
        raise naming.error(e) from None


def parse_client_v1(
    text: str,
    source: str,
    environ: Optional[Mapping[str, str]] = None,
    base_dir: Optional[str] = None,
    *,
    fmt: str = "toml",
    strict: bool = True,
) -> ClientConfig:
    """
    Parse an frpc v1 file (TOML, YAML or JSON text) into a
    :class:`ClientConfig`.  The files ``includes`` names (relative to
    *base_dir*, by default the directory of *source*) add their
    [[proxies]] and [[visitors]], each file read in its own format.
    """
    keys = client_v1_keys()
    naming = Naming(keys, PROXY_V1_KEYS_WITH_PLUGINS)
    warnings = Warnings(render=naming.render)
    try:
        with warnings.kept_on_error():
            v1 = parse_v1_text(text, source, fmt, environ)
            reader = FileReader(v1, strict, warnings, naming)
            common = reader.common(keys, skip=("proxies", "visitors"))
            _v1_heartbeat_default(common)
            values, metas = read_client_common(common, source, warnings)
            start = values.get("start", ())
            doc = FlatDocument()
            visitors: set = set()
            reader.proxies(doc)
            reader.visitors(visitors, start, doc)
            if base_dir is None:
                base_dir = os.path.dirname(source) or os.curdir
            for pattern in values.get("includes", ()):
                for file in included_files(pattern, base_dir, source, warnings):
                    _include(
                        file, doc, visitors, start, environ, strict, warnings, naming
                    )
            return client_from_document(
                doc, values, metas, source, warnings, other_names=visitors
            )
    except ConfigError as e:
        raise naming.error(e) from None


def _v1_heartbeat_default(common: Section) -> None:
    """frp v1's heartbeatInterval defaults to -1 (off) with tcpMux, where
    frpc.ini's is 30."""
    if "heartbeat_interval" not in common.entries:
        tcp_mux = common.entries.get("tcp_mux")
        off = tcp_mux is None or tcp_mux.value == "true"
        common.entries["heartbeat_interval"] = Entry(
            "-1" if off else "30", common.source, 0
        )


def _include(file, doc, visitors, start, environ, strict, warnings, naming) -> None:
    """The [[proxies]] and [[visitors]] of one included file."""
    fmt = config_format(file)
    if fmt == "ini":
        raise ConfigError(
            f"{file}: an INI file cannot be included from a v1 config; "
            f"use .toml, .yaml or .json"
        )
    file, text = read_file(file)
    reader = FileReader(
        parse_v1_text(text, file, fmt, environ), strict, warnings, naming
    )
    for name in reader.text.data:
        if name not in ("proxies", "visitors"):
            reader.warn(
                reader.place((name,), str(name)),
                "only proxies and visitors are read from an included file; ignored",
            )
    reader.proxies(doc)
    reader.visitors(visitors, start, doc)
