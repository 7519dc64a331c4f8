# -*- test-case-name: tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin -*-
"""
The ``labrelay-client`` console command: ``reload``, ``status`` and ``stop``
of a running client, through its admin API (as ``frpc reload|status|stop``).

The admin address, port and credentials are read from the same config
file the client runs with (``-c``: frpc.ini, or frp's v1 frpc.toml,
.yaml, .json).  The client itself runs under twistd (``twistd
labrelay-client -c frpc.ini``); this command only talks to it, or
checks, verifies or converts a config file
(:mod:`labrelay.config_check`).

``reload`` sends ``POST /api/reload`` (falling back to frpc's ``GET`` when
the API answers 405, as frpc's own does), ``stop`` sends ``POST /api/stop``.

Exit status: 0 on success, 1 otherwise, with one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request

from .. import VERSION_TEXT
from ..config import ConfigError, convert_client_config, load_client_config
from ..config_check import (
    add_config_commands,
    check_config,
    convert_config,
    verify_config,
)
from ..logs import escape_controls

#: Seconds to wait for the admin API.
TIMEOUT = 30
#: Proxy types in the order frpc prints them; others follow, sorted.
TYPE_ORDER = ("tcp", "udp", "http", "https", "stcp", "sudp", "xtcp", "tcpmux")
_COLUMNS = (
    ("Name", "name"),
    ("Status", "status"),
    ("LocalAddr", "local_addr"),
    ("Plugin", "plugin"),
    ("RemoteAddr", "remote_addr"),
    ("Error", "err"),
)


class CommandError(Exception):
    """Ends the command with exit status 1 and this message."""


def admin_url(config, path: str) -> str:
    """The URL of *path* on the admin API a config describes."""
    host = config.admin_addr
    # A wildcard listen address is reached on the loopback.
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(
        host, host
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.admin_port}{path}"


def call(
    config, method: str, path: str, body: bytes = b"", timeout: float = TIMEOUT
) -> tuple[int, bytes]:
    """``(status code, body)`` of one admin API request."""
    url = admin_url(config, path)
    request = urllib.request.Request(
        url, method=method, data=None if method == "GET" else body
    )
    if config.admin_user or config.admin_pwd:
        pair = f"{config.admin_user}:{config.admin_pwd}".encode()
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(pair).decode("ascii")
        )
    # No proxies from the environment: the admin API is local.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CommandError(f"cannot reach the admin API at {url}: {reason}") from None


def _check(code: int, body: bytes) -> None:
    if code != 200:
        # the answer goes to a terminal: no escape sequences from it
        text = escape_controls(body.decode("utf-8", "replace").strip())
        raise CommandError(f"code [{code}], {text}")


def format_status(document: dict) -> str:
    """The ``status`` table, one block per proxy type."""
    lines = ["Proxy Status...", ""]
    extra = sorted(set(document) - set(TYPE_ORDER))
    for proxy_type in TYPE_ORDER + tuple(extra):
        entries = document.get(proxy_type) or []
        if not entries:
            continue
        rows = [[title for title, _ in _COLUMNS]]
        rows += [[str(entry.get(key, "")) for _, key in _COLUMNS] for entry in entries]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines.append(proxy_type.upper())
        for row in rows:
            lines.append(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths)
                ).rstrip()
            )
        lines.append("")
    return "\n".join(lines)


def _reload(config, out) -> None:
    code, body = call(config, "POST", "/api/reload")
    if code == 405:
        # frpc's own admin API (and labrelay before 2026) takes GET only.
        code, body = call(config, "GET", "/api/reload")
    _check(code, body)
    print("reload success", file=out)


def _status(config, out) -> None:
    code, body = call(config, "GET", "/api/status")
    _check(code, body)
    try:
        document = json.loads(body)
    except ValueError:
        raise CommandError(
            "the admin API answered /api/status with something that is not JSON"
        ) from None
    print(format_status(document), file=out)


def _stop(config, out) -> None:
    _check(*call(config, "POST", "/api/stop"))
    print("stop success", file=out)


_COMMANDS = {"reload": _reload, "status": _status, "stop": _stop}


def environment(env_file) -> dict:
    """The process environment, plus the ``NAME=value`` lines of
    *env_file* (systemd's EnvironmentFile syntax: ``#`` comments, optional
    quotes), which win."""
    environ = dict(os.environ)
    if not env_file:
        return environ
    with open(env_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            name, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            environ[name.strip()] = value
    return environ


def _no_admin_api(config, command: str) -> str:
    """Why *command* cannot run: *config* has no admin API (in the
    words of the file's format)."""
    if getattr(config, "format", "ini") == "ini":
        what = (
            "admin_port is not set; set admin_port (and admin_addr, "
            "admin_user, admin_pwd as needed) in [common]"
        )
    else:
        what = (
            "webServer.port is not set; set webServer.port (and "
            "webServer.addr, webServer.user, webServer.password as needed)"
        )
    return (
        f"{config.source}: {what} and restart the client to use "
        f"'labrelay-client {command}'"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labrelay-client",
        description="Talk to a running labrelay client through its admin "
        "API (admin_addr/admin_port of its frpc.ini). Run the "
        "client itself with: twistd labrelay-client -c frpc.ini",
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read NAME=value lines (a systemd "
        "EnvironmentFile such as /etc/labrelay/env) "
        "for the config's {{ .Envs.NAME }} templates",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, what in (
        ("reload", "apply the config file's proxy sections again (no restart)"),
        ("status", "show the status of every proxy"),
        ("stop", "stop the client"),
    ):
        command = commands.add_parser(name, help=what, description=what)
        command.add_argument(
            "-c",
            "--config",
            default="./frpc.ini",
            help="the client's config file, for its admin API address "
            "(default: ./frpc.ini)",
        )
    add_config_commands(commands, "the client's config file", "./frpc.ini")
    return parser


def main(argv=None, out=None, err=None) -> int:
    """Run the command; its exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error (already printed)
        return 0 if e.code in (0, None) else 1
    try:
        environ = environment(args.env_file)
    except OSError as e:
        print(
            f"labrelay-client: --env-file {args.env_file}: {e.strerror or e}", file=err
        )
        return 1

    if args.command == "convert":
        return convert_config(
            "labrelay-client",
            load_client_config,
            convert_client_config,
            args.ini_file,
            args.format,
            out,
            err,
            environ,
        )
    strict = getattr(args, "strict", True)

    def load(path):
        return load_client_config(path, environ, strict=strict)

    if args.command in ("check", "verify"):
        run = verify_config if args.command == "verify" else check_config
        return run("labrelay-client", load, args.config, out, err)
    try:
        config = load(args.config)
        if config.admin_port <= 0:
            raise CommandError(_no_admin_api(config, args.command))
        _COMMANDS[args.command](config, out)
    except (ConfigError, CommandError) as e:
        print(f"labrelay-client {args.command}: {e}", file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
