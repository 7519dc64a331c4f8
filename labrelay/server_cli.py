"""
The ``labrelay-server`` console command: ``--version`` and ``check`` of an
frps.ini, without starting anything.  The relay itself runs under twistd
(``twistd -n labrelay-server -c frps.ini``).

Exit status: 0 when the file would start the relay, 1 otherwise, with the
warnings and then the one error line on stderr.
"""

import argparse
import sys

from . import VERSION_TEXT
from .config import load_server_config
from .config_check import check_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labrelay-server",
        description="Check a labrelay relay's frps.ini. Run the relay "
        "itself with: twistd -n labrelay-server -c frps.ini",
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    what = "check the config file without running anything: its warnings, or its error"
    check = commands.add_parser("check", help=what, description=what)
    check.add_argument(
        "-c",
        "--config",
        default="./frps.ini",
        help="the relay's frps.ini (default: ./frps.ini)",
    )
    return parser


def main(argv=None, out=None, err=None) -> int:
    """Run the command; its exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error
        return 0 if e.code in (0, None) else 1
    return check_config("labrelay-server", load_server_config, args.config, out, err)


if __name__ == "__main__":
    sys.exit(main())
