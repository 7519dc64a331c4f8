# -*- test-case-name: tests.unit.test_plugins -*-
"""
Twisted's plugin system finds both labrelay commands.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from ..support.plugins import CLIENT_DESCRIPTION, SERVER_DESCRIPTION


class PluginTests(SynchronousTestCase):
    """twistd finds both labrelay commands."""

    def test_get_plugins_finds_both(self):
        """getPlugins(IServiceMaker) finds both taps, pointing at the tap
        modules."""
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertEqual(makers["labrelay-server"].module, "labrelay.server_tap")
        self.assertEqual(makers["labrelay-client"].module, "labrelay.client_tap")
        self.assertEqual(makers["labrelay-server"].description, SERVER_DESCRIPTION)
        self.assertEqual(makers["labrelay-client"].description, CLIENT_DESCRIPTION)
