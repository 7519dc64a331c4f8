"""Print README.rst's Nth command (1: run the relay, 2: run the tests): the
single line of the Nth literal block, so CI runs exactly what users read."""

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.rst"


def commands(text: str):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith("::"):
            block = [x for x in lines[i + 1 : i + 4] if x.strip()]
            if block and block[0].startswith("    "):
                yield block[0].strip()


if __name__ == "__main__":
    wanted = int(sys.argv[1])
    found = list(commands(README.read_text(encoding="utf-8")))[:2]
    if len(found) < wanted:
        sys.exit(f"README.rst has no command {wanted}")
    print(found[wanted - 1])
