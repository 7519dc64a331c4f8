# -*- test-case-name: tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin -*-
"""
The admin API's routes on the client's config file: ``GET /api/config``,
``PUT /api/config`` and ``/api/reload``, and the text transformations
that keep secrets off the wire.

``GET`` shows the file as stored (templates not rendered), trimmed,
without ``token`` lines and with the other secrets (:data:`SECRET_KEYS`)
shown as :data:`REDACTED`; ``PUT`` writes the body back, keeping the
file's ``token`` line and the redacted secrets, for the next reload to
apply.  A reload re-reads the file (:mod:`labrelay.client.reload`).
A file in frp's v1 format (TOML, YAML, JSON) is shown and stored by
:mod:`labrelay.client.v1_redaction` instead, with its secrets redacted
the same way.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

from ..config import ConfigError, config_format
from ..web import Reply
from . import v1_redaction

#: Keys whose values ``GET /api/config`` does not show (``token`` lines are
#: left out altogether, as frpc does).
SECRET_KEYS = frozenset(
    {
        "admin_pwd",
        "oidc_client_secret",
        "http_pwd",
        "sk",
        "group_key",
        "plugin_http_passwd",
    }
)
#: What ``GET /api/config`` shows instead of a secret; ``PUT`` puts the
#: stored value back where it finds it.
REDACTED = "<redacted>"
_KEY_LINE = re.compile(r"([^=:\s][^=:]*?)\s*[=:]\s*(.*)\Z")

_log = Logger()


def _sections(text: str):
    """``(section, key or None, trimmed line)`` for each line of INI text
    (key lower-cased; None for headers, comments and blank lines)."""
    section = ""
    for row in text.split("\n"):
        line = row.strip()
        key = None
        if line.startswith("[") and "]" in line:
            section = line[1 : line.index("]")].strip()
        elif line and line[0] not in "#;":
            match = _KEY_LINE.match(line)
            if match:
                key = match.group(1).strip().lower()
        yield section, key, line


def config_for_display(text: str) -> str:
    """
    ``GET /api/config``: every line trimmed, ``token`` lines left out (as
    frpc), the value of every :data:`SECRET_KEYS` key replaced by
    :data:`REDACTED`.  *text* is the file as stored: a template such as
    ``{{ .Envs.FRP_TOKEN }}`` is never rendered here, so what the
    environment holds is not shown.
    """
    lines = []
    for _, key, line in _sections(text):
        if line.startswith("token"):
            continue
        if key in SECRET_KEYS:
            line = line[: _KEY_LINE.match(line).start(2)] + REDACTED
        lines.append(line)
    return "\n".join(lines)


def config_to_store(body: str, original: str) -> str:
    """
    ``PUT /api/config``: the body's lines trimmed and without ``token``
    lines; the original file's first ``token`` line is put back after each
    ``[common]`` header, and a secret written as :data:`REDACTED` gets the
    original's value for the same section and key back (or is left out),
    so no secret has to travel.
    """
    token = next(
        (
            row.strip()
            for row in original.split("\n")
            if row.strip().startswith("token")
        ),
        "",
    )
    secrets = {
        (section, key): line
        for section, key, line in _sections(original)
        if key in SECRET_KEYS
    }
    rows = []
    for section, key, row in _sections(body):
        if row.startswith("token"):
            continue
        if key in SECRET_KEYS and _KEY_LINE.match(row).group(2) == REDACTED:
            row = secrets.get((section, key))
            if row is None:
                continue
        rows.append(row)
        if token and row.startswith("[common]"):
            rows.append(token)
    return "\n".join(rows)


def _config_path(client) -> str:
    path = client.config_path
    if not path:
        raise Reply(400, "labrelay-client has no config file path")
    return path


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise Reply(400, f"{path}: cannot read: {e}") from e


def show_config(client) -> bytes:
    """``GET /api/config``: *client*'s file for display."""
    # As stored: rendering {{ .Envs.X }} here would hand the
    # environment (a token kept out of the file) to the caller.
    path = _config_path(client)
    fmt = config_format(path)
    if fmt == "ini":
        return config_for_display(_read(path)).encode("utf-8")
    return v1_redaction.redact(_read(path), fmt)[0].encode("utf-8")


def store_config(client, body: bytes) -> bytes:
    """``PUT /api/config``: *body* becomes *client*'s file, applied by the
    next reload."""
    if not body:
        raise Reply(400, "body can't be empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Reply(400, "body is not UTF-8 text") from None
    path = _config_path(client)
    fmt = config_format(path)
    if fmt == "ini":
        content = config_to_store(text, _read(path))
    else:
        try:
            content = v1_redaction.restore(text, _read(path), fmt)
        except v1_redaction.RedactionError as e:
            raise Reply(400, str(e)) from None
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    except OSError as e:
        raise Reply(500, f"write content to {path} failed: {e}") from e
    _log.info("admin API: {path} rewritten; POST /api/reload applies it", path=path)
    return b""


def reload_config(client) -> bytes:
    """``/api/reload``: *client* re-reads its file; 400 for a bad file
    (nothing changed), 500 if applying it fails."""
    try:
        client.reload()
    except ConfigError as e:
        _log.warn("reload: {error}; nothing changed", error=e)
        raise Reply(400, str(e)) from e
    except Exception as e:
        _log.failure("reload failed")
        raise Reply(500, f"reload failed: {e}") from e
    return b""


__all__ = [
    "config_for_display",
    "config_to_store",
    "show_config",
    "store_config",
    "reload_config",
    "REDACTED",
    "SECRET_KEYS",
]
