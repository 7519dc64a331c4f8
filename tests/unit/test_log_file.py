# -*- test-case-name: tests.unit.test_log_file -*-
"""log_file, log_level and log_max_days: where logs go and how long they stay."""

import os
import time

from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.logs import (
    PruningDailyLogFile,
    command_line_chose_logging,
    install_log_observer,
    make_log_observer,
)


class LogFileTests(SynchronousTestCase):
    def test_file_at_level(self):
        """log_file = path writes there, and only events at log_level or above."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "frps.log")
        config = parse_server_config(f"[common]\nlog_file = {path}\nlog_level = warn\n")
        observer = make_log_observer(config)
        log = Logger(namespace="labrelay.test", observer=observer)
        log.info("routine {n}", n=1)
        log.warn("attention {n}", n=2)
        log.error("failure {n}", n=3)
        with open(path) as f:
            text = f.read()
        self.assertNotIn("routine 1", text)
        self.assertIn("attention 2", text)
        self.assertIn("failure 3", text)

    def test_prune_keeps_recent_days(self):
        """Rotated files older than log_max_days are deleted, newer ones kept."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        now = time.time()
        ages = {
            "frps.log.2026_11_20": 8,
            "frps.log.2026_11_27": 1,
            "other.log.2026_11_01": 30,
        }
        for name, days in ages.items():
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write("x\n")
            os.utime(path, (now - days * 86400, now - days * 86400))
        log_file = PruningDailyLogFile("frps.log", directory, max_days=3)
        self.addCleanup(log_file.close)
        log_file.prune(now=now)
        left = sorted(os.listdir(directory))
        self.assertEqual(
            left, ["frps.log", "frps.log.2026_11_27", "other.log.2026_11_01"]
        )

    def test_installed_as_twistd_observer(self):
        """The observer becomes the application's ILogObserver component."""
        application = Application("labrelay-server")
        observer = make_log_observer(parse_server_config("[common]\n"))
        install_log_observer(application, observer)
        self.assertIs(application.getComponent(ILogObserver), observer)

    def test_command_line_wins(self):
        """twistd --logfile or --syslog keeps twistd's own log destination."""

        class Parent(dict):
            pass

        class Options:
            parent = Parent(logfile="/var/log/x.log", syslog=False, logger=None)

        self.assertTrue(command_line_chose_logging(Options()))
        Options.parent = Parent(logfile=None, syslog=False, logger=None)
        self.assertFalse(command_line_chose_logging(Options()))
