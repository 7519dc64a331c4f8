# -*- test-case-name: tests.test_commands -*-
"""
The console commands a new user meets first: ``labrelay-server`` and
``labrelay-client`` with ``--version`` and ``check``.
"""

import contextlib
import io
import os

from twisted.trial.unittest import SynchronousTestCase

from labrelay import FRP_VERSION, __version__
from labrelay import server_cli
from labrelay.client import cli as client_cli

VERSION = f"labrelay {__version__} (speaks frp {FRP_VERSION})"


class CommandCase(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = os.path.abspath(self.mktemp() + ".ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_main(self, main, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()


class VersionTests(CommandCase):
    def test_server_version(self):
        self.assertEqual(self.run_main(server_cli.main, "--version"),
                         (0, VERSION + "\n", ""))

    def test_client_version(self):
        self.assertEqual(self.run_main(client_cli.main, "--version"),
                         (0, VERSION + "\n", ""))


class CheckTests(CommandCase):
    def test_server_ok_with_warnings(self):
        path = self.write("[common]\nbind_addr = 127.0.0.1\nbind_prot = 1\n")
        code, out, err = self.run_main(server_cli.main, "check", "-c", path)
        self.assertEqual(code, 0)
        self.assertEqual(out, f"{path}: OK (1 warnings)\n")
        self.assertEqual(err, f"labrelay-server: warning: {path} [common] "
                              f"bind_prot: unknown key; ignored (did you "
                              f"mean 'bind_port'?)\n")

    def test_server_error(self):
        path = self.write("[common]\nbind_prot = 1\nbind_port = x\n")
        code, out, err = self.run_main(server_cli.main, "check", "-c", path)
        self.assertEqual((code, out), (1, ""))
        lines = err.splitlines()
        self.assertEqual(len(lines), 2, err)
        self.assertIn("bind_prot: unknown key", lines[0])
        self.assertTrue(lines[1].startswith(
            f"labrelay-server: {path}: [common] bind_port: "), lines[1])

    def test_client_ok_counts_proxies(self):
        path = self.write("[common]\nserver_addr = relay.example\n"
                          "[ssh]\nlocal_port = 22\nremote_port = 6001\n")
        code, out, err = self.run_main(client_cli.main, "check", "-c", path)
        self.assertEqual((code, out, err),
                         (0, f"{path}: OK (0 warnings, 1 proxies)\n", ""))

    def test_client_missing_file(self):
        code, out, err = self.run_main(client_cli.main, "check", "-c",
                                       "/nonexistent/frpc.ini")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("/nonexistent/frpc.ini: cannot read", err)
