"""
The config-file commands both console programs share: ``check``,
``verify`` (frp's ``frpc verify`` / ``frps verify``) and ``convert``
(an frps.ini / frpc.ini written again in frp's v1 format), and the
``--strict_config`` switch they and twistd take.

Each loads a file as the program would and says what it would say,
without running anything.  Exit status: 0 when the file would start the
program, 1 otherwise, with the warnings first and then the error on
stderr.
"""

from __future__ import annotations

import argparse
import os
import re

from .config import ConfigError
from .config.ini import parse_go_bool
from .config.values import read_file

_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.S)
_ENV_NAME = re.compile(r"\.Envs\.([^\W\d]\w*)")

#: The v1 formats ``convert`` writes.
CONVERT_FORMATS = ("toml", "yaml", "json")


def strict_flag(text: str) -> bool:
    """``--strict_config``'s value, as Go's flag package reads a boolean."""
    try:
        return parse_go_bool(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_config_commands(commands, config_help: str, default_path: str) -> None:
    """The ``check``, ``verify`` and ``convert`` subcommands on *commands*
    (an argparse subparsers object)."""
    for name, what in (
        (
            "check",
            "check the config file without running anything: its warnings, "
            "or its error",
        ),
        (
            "verify",
            "verify the config file as frp's 'verify' does: 'syntax is ok', "
            "or every problem with file and line",
        ),
    ):
        command = commands.add_parser(name, help=what, description=what)
        command.add_argument(
            "-c",
            "--config",
            default=default_path,
            help=f"{config_help} (default: {default_path})",
        )
        add_strict_option(command)
    what = (
        "write an frp INI file again in frp's v1 format (TOML by default) "
        "on standard output; {{ .Envs.X }} templates are kept"
    )
    convert = commands.add_parser("convert", help=what, description=what)
    convert.add_argument("ini_file", help="the INI file to convert")
    convert.add_argument(
        "--format",
        choices=CONVERT_FORMATS,
        default="toml",
        help="the v1 format to write (default: toml)",
    )


def add_strict_option(command) -> None:
    """``--strict_config[=false]``: frp's switch for v1 files (a key frp
    does not know is an error, not a warning); true by default, as in frp."""
    command.add_argument(
        "--strict_config",
        "--strict-config",
        dest="strict",
        metavar="BOOL",
        nargs="?",
        const=True,
        default=True,
        type=strict_flag,
        help="for TOML/YAML/JSON files, a key frp does not know is an "
        "error (default: true; --strict_config=false makes it a warning)",
    )


def check_config(program: str, load, path: str, out, err) -> int:
    """``check``: load *path* with *load*; print each warning and then the
    error, or a summary; 0 if it would start, 1 if not."""
    try:
        config = load(path)
    except ConfigError as e:
        _refused(program, e, err)
        return 1
    _warn(program, config.warnings, err)
    proxies = getattr(config, "proxies", None)
    what = f", {len(proxies)} proxies" if proxies is not None else ""
    print(f"{config.source}: OK ({len(config.warnings)} warnings{what})", file=out)
    return 0


def verify_config(program: str, load, path: str, out, err) -> int:
    """``verify``, worded as frp's: ``the configuration file PATH syntax is
    ok`` on stdout (after any warnings on stderr), or the warnings and the
    error on stderr and 1."""
    try:
        config = load(path)
    except ConfigError as e:
        _refused(program, e, err)
        return 1
    _warn(program, config.warnings, err)
    print(f"{program}: the configuration file {path} syntax is ok", file=out)
    return 0


def convert_config(
    program: str, load, convert, path: str, fmt: str, out, err, environ=None
) -> int:
    """
    ``convert``: *path* (INI) loaded with ``load(path, environ)`` as the
    program would (so a file it would refuse is refused here, with the
    same message), then converted by *convert* to *fmt*, on *out*.  A
    ``{{ .Envs.X }}`` variable that *environ* (default: the process's)
    does not set stands in as a long placeholder for the check: the
    converted file keeps the template, so its value is not needed.  The
    warnings go to *err*, and so does a note when the result holds
    labrelay's own keys (frp reads those only with
    ``--strict_config=false``).
    """
    environ = dict(os.environ if environ is None else environ)
    try:
        source, text = read_file(path)
        for name in _ENV_NAME.findall(text):
            environ.setdefault(name, f"unset-variable-{name}-" + "x" * 16)
        config = load(path, environ)
        converted = convert(text, source, fmt=fmt)
    except ConfigError as e:
        _refused(program, e, err)
        return 1
    _warn(program, config.warnings, err)
    if _has_own_keys(converted, fmt):
        print(
            f"{program}: note: {path} sets labrelay's own keys; they are "
            f"written in the 'labrelay' table, which frp reads only with "
            f"--strict_config=false",
            file=err,
        )
    out.write(converted if converted.endswith("\n") else converted + "\n")
    return 0


def _has_own_keys(converted: str, fmt: str) -> bool:
    """Whether a converted file has a top-level ``labrelay`` table."""
    if fmt == "json":
        import json

        return "labrelay" in json.loads(converted)
    if fmt == "yaml":
        import yaml

        return "labrelay" in (yaml.safe_load(converted) or {})
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    return "labrelay" in tomllib.loads(_TEMPLATE.sub("0", converted))


def _warn(program: str, warnings, err) -> None:
    for warning in warnings:
        print(f"{program}: warning: {warning}", file=err)


def _refused(program: str, error: ConfigError, err) -> None:
    _warn(program, error.warnings, err)
    print(f"{program}: {error}", file=err)
