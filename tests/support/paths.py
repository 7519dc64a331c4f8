"""
Where tests find what the repository holds: the frp captures in
``tests/data``, the shipped configs in ``conf/``, the README and ``docs/``.
Test modules sit in a tier below ``tests/``, so they locate these from
here rather than from their own file.
"""

from twisted.python.filepath import FilePath

#: The ``tests`` directory.
TESTS = FilePath(__file__).parent().parent()
#: The repository root.
REPO_ROOT = TESTS.parent()
#: The real frp 0.70 captures, one directory per scenario.
DATA = TESTS.child("data")
#: The shipped example configs.
CONF = REPO_ROOT.child("conf")
