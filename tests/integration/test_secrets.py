# -*- test-case-name: tests.integration.test_secrets -*-
"""Tokens never reach the logs (tests.unit.test_secrets: private keys
never reach error messages)."""

from twisted.trial.unittest import TestCase

from labrelay.errors import LoginRefused

from ..support.harness import (
    Client,
    LogCapture,
    Relay,
    async_test,
    connect_user,
    echo_server,
    tcp_proxy,
    within,
)

SECRET_TOKEN = "s3cret-token-that-must-not-leak"


class SecretsTests(TestCase):
    timeout = 30

    def assert_not_logged(self, log, *secrets):
        for _, text, _ in log.events:
            for secret in secrets:
                self.assertNotIn(secret, text)

    @async_test
    async def test_token_not_logged(self):
        """A working tunnel and a refused login log neither token."""
        log = LogCapture(self)
        relay = await Relay(self, f"token = {SECRET_TOKEN}\n").start()
        backend = echo_server(self)
        client = await Client(
            self, relay.port, tcp_proxy("p", backend), token=SECRET_TOKEN
        ).start()
        port = await client.running("p")
        user = await connect_user(self, port)
        user.transport.write(b"x" * 1000)
        await within(user.wait_for(1000))
        wrong = Client(self, relay.port, "", token="wrong-" + SECRET_TOKEN)
        first = wrong.client.first_login
        await wrong.start()
        with self.assertRaises(LoginRefused):
            await within(first)
        self.assert_not_logged(log, SECRET_TOKEN)
