# -*- test-case-name: tests.unit.test_stcp_config -*-
"""
frpc's visitor sections (``role = visitor`` in frpc.ini, ``[[visitors]]``
in the v1 files, which :mod:`~labrelay.config.v1read` turns into the
same sections): the model (:class:`VisitorConfig`) and
:func:`read_visitors`.  labrelay runs ``stcp`` visitors; the other visitor
types (sudp, xtcp) are skipped with a warning by
:mod:`~labrelay.config.proxy`.
"""

from __future__ import annotations

import attrs

from .errors import Warnings, fail
from .ini import DEFAULT_SECTION, IniDocument
from .schema import key_table, setting
from .values import convert, did_you_mean

#: visitor types labrelay runs
SUPPORTED_VISITOR_TYPES = ("stcp",)


@attrs.frozen
class VisitorConfig:
    """One stcp visitor: a local listener whose every connection reaches
    the secret proxy ``server_user.server_name`` through the server."""

    name: str
    type: str = setting("stcp")
    server_name: str = setting("")
    server_user: str = setting("")
    sk: str = setting("")
    bind_addr: str = setting("127.0.0.1")
    bind_port: int = setting(0, "port")
    use_encryption: bool = setting(False)
    use_compression: bool = setting(False)

    def target(self, own_user: str) -> str:
        """The proxy name the server knows (frp's
        BuildTargetServerProxyName): ``server_user`` or the client's own
        user, a dot, ``server_name``."""
        user = self.server_user or own_user
        return f"{user}.{self.server_name}" if user else self.server_name


#: keys of a visitor section labrelay reads
VISITOR_KEYS = {**key_table(VisitorConfig), "role": "str"}


def is_run_visitor(doc: IniDocument, name: str) -> bool:
    """Whether section *name* is a visitor labrelay runs."""
    role = doc.lookup(name, "role")
    kind = doc.lookup(name, "type")
    return (
        role is not None
        and role.value == "visitor"
        and kind is not None
        and kind.value in SUPPORTED_VISITOR_TYPES
    )


def read_visitors(
    doc: IniDocument, common: dict, warnings: Warnings
) -> tuple[VisitorConfig, ...]:
    """Every started stcp visitor section of *doc*, in file order."""
    start = common.get("start", ())
    visitors = []
    for name, section in doc.sections.items():
        if name in (DEFAULT_SECTION, "common") or name.startswith("range:"):
            continue
        if start and name not in start:
            continue
        if is_run_visitor(doc, name):
            visitor = _visitor(doc, name, section, warnings)
            if visitor is not None:
                visitors.append(visitor)
    return tuple(visitors)


def _visitor(doc, name: str, section, warnings: Warnings):
    def get(key: str, kind: str = "str", default=None):
        entry = section.entries.get(key) or doc.lookup(name, key)
        if entry is None or entry.value == "":
            return default
        return convert(entry, name, key, kind)

    for key, entry in section.entries.items():
        if key not in VISITOR_KEYS:
            warnings.add(
                entry.source,
                name,
                key,
                "not used by stcp visitors; ignored" + did_you_mean(key, VISITOR_KEYS),
            )
    origin = section.source
    server_name = get("server_name", default="")
    if not server_name:
        raise fail(
            origin, name, "server_name", "required: the name of the stcp proxy to visit"
        )
    sk = get("sk", default="")
    if not sk:
        raise fail(origin, name, "sk", "required: the stcp proxy's secret key")
    bind_port = get("bind_port", "int", 0)
    if bind_port > 65535:
        raise fail(origin, name, "bind_port", f"{bind_port} is not a port (1-65535)")
    if bind_port <= 0:
        # frp: only connections redirected by other visitors (xtcp
        # fallback), which labrelay does not run
        warnings.add(
            origin, name, "bind_port", "no local port to listen on; section skipped"
        )
        return None
    return VisitorConfig(
        name=name,
        server_name=server_name,
        server_user=get("server_user", default=""),
        sk=sk,
        bind_addr=get("bind_addr", default="127.0.0.1"),
        bind_port=bind_port,
        use_encryption=get("use_encryption", "bool", False),
        use_compression=get("use_compression", "bool", False),
    )
