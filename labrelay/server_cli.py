"""
The ``labrelay-server`` console command: ``--version``, and ``check``,
``verify`` and ``convert`` of a config file, without starting anything.
The relay itself runs under twistd (``twistd -n labrelay-server -c
frps.ini``, or ``-c frps.toml``).

Exit status: 0 when the file would start the relay (or was converted), 1
otherwise, with the warnings and then the error on stderr.
"""

import argparse
import sys

from . import VERSION_TEXT
from .config import convert_server_config, load_server_config
from .config_check import (
    add_config_commands,
    check_config,
    convert_config,
    verify_config,
)

PROGRAM = "labrelay-server"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Check, verify or convert a labrelay relay's config "
        "file (frps.ini, or frp's v1 frps.toml/.yaml/.json). Run the relay "
        "itself with: twistd -n labrelay-server -c frps.ini",
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    add_config_commands(commands, "the relay's config file", "./frps.ini")
    return parser


def main(argv=None, out=None, err=None) -> int:
    """Run the command; its exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error
        return 0 if e.code in (0, None) else 1
    if args.command == "convert":
        return convert_config(
            PROGRAM,
            load_server_config,
            convert_server_config,
            args.ini_file,
            args.format,
            out,
            err,
        )

    def load(path):
        return load_server_config(path, strict=args.strict)

    run = verify_config if args.command == "verify" else check_config
    return run(PROGRAM, load, args.config, out, err)


if __name__ == "__main__":
    sys.exit(main())
