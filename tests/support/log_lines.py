"""
Reading labrelay's log lines in tests: their ``key=value`` fields, and a
forged field (a newline, terminal escapes) that must come out as one
escaped line.
"""

import re


def fields(line):
    """The key=value fields of *line* (bare or double-quoted values)."""
    return {
        key: value.strip('"')
        for key, value in re.findall(r'(?:^| )(\w+)=("(?:[^"\\]|\\.)*"|[^ ;]+)', line)
    }


#: What a peer puts in a field to forge a line and colour the terminal.
FORGED = "\n[fake] line\x1b[31m\x07\r"
#: How it must come out: one line, every control written as an escape.
ESCAPED = "\\x0a[fake] line\\x1b[31m\\x07\\x0d"


def assert_one_line_each(testcase, text):
    """No forged line and no raw control character in *text* (a text log);
    each line starts like a log entry or a traceback continuation."""
    for line in text.split("\n")[:-1]:
        testcase.assertFalse(line.startswith("[fake]"), line)
        testcase.assertEqual(
            [c for c in line if not c.isprintable() and c != "\t"], [], line
        )
