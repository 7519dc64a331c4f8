# -*- test-case-name: tests.unit.test_admin_v1 -*-
"""
The admin API's ``/api/config`` on a client config written in frp's v1
format: secrets redacted on the way out and put back on the way in
(:mod:`labrelay.client.v1_redaction`).
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.client.v1_redaction import RedactionError, redact, restore

TOML = """\
# the lab's client
serverAddr = "relay.example.org"
auth.token = "s3cret-token"
webServer.port = 7400
webServer.user = "admin"
webServer.password = 'admin-pw'

[[proxies]]
name = "web"
type = "http"
localPort = 8888
subdomain = "jupyter"
httpUser = "lab"
httpPassword = "web-pw"
"""

YAML = """\
serverAddr: relay.example.org
auth:
  token: s3cret-token   # from the relay's admin
webServer:
  port: 7400
  password: "admin-pw"
proxies:
  - name: web
    type: http
    localPort: 8888
    subdomain: jupyter
    httpPassword: web-pw
"""

JSON = """\
{
  "serverAddr": "relay.example.org",
  "auth": {"token": "s3cret-token"},
  "webServer": {"port": 7400, "password": "admin-pw"},
  "proxies": [
    {"name": "web", "type": "http", "localPort": 8888,
     "subdomain": "jupyter", "httpPassword": "web-pw"}
  ]
}
"""

SECRETS = ("s3cret-token", "admin-pw", "web-pw")


class RedactTests(SynchronousTestCase):
    def assert_redacted(self, text, fmt):
        shown, values = redact(text, fmt)
        for secret in SECRETS:
            self.assertNotIn(secret, shown)
        self.assertEqual(values, list(SECRETS))
        self.assertEqual(shown.count("<redacted>"), 3)
        # everything else is kept as written
        self.assertIn("relay.example.org", shown)
        self.assertIn("jupyter", shown)
        return shown

    def test_toml(self):
        shown = self.assert_redacted(TOML, "toml")
        self.assertIn('auth.token = "<redacted>"', shown)
        self.assertIn("webServer.password = '<redacted>'", shown)
        self.assertIn('webServer.user = "admin"', shown)
        self.assertIn("# the lab's client", shown)

    def test_yaml(self):
        shown = self.assert_redacted(YAML, "yaml")
        self.assertIn('token: "<redacted>"   # from the relay', shown)

    def test_json(self):
        self.assert_redacted(JSON, "json")

    def test_templates_are_shown_not_rendered(self):
        """A secret kept in the environment is shown as its template (the
        variable's name), never rendered; the file still parses for the
        scan although an unquoted template is not TOML."""
        text = 'auth.token = "{{ .Envs.FRP_TOKEN }}"\nserverPort = {{ .Envs.P }}\n'
        self.assertEqual(redact(text, "toml"), (text, []))

    def test_unparseable_file_does_not_leak(self):
        text = 'auth.token = "s3cret-token"\nbroken = = =\n'
        shown, _ = redact(text, "toml")
        self.assertNotIn("s3cret-token", shown)
        self.assertIn("broken = = =", shown)

    def test_secret_equal_to_other_value_round_trips(self):
        """A password equal to the user name redacts both; PUT of what GET
        showed gives the file back unchanged."""
        text = 'webServer.user = "admin"\nwebServer.password = "admin"\n'
        shown, _ = redact(text, "toml")
        self.assertNotIn('"admin"', shown)
        self.assertEqual(restore(shown, text, "toml"), text)


class RestoreTests(SynchronousTestCase):
    def test_round_trip_each_format(self):
        for text, fmt in ((TOML, "toml"), (YAML, "yaml"), (JSON, "json")):
            shown, _ = redact(text, fmt)
            self.assertEqual(restore(shown, text, fmt), text, fmt)

    def test_edit_keeps_secrets(self):
        shown, _ = redact(TOML, "toml")
        edited = shown.replace("localPort = 8888", "localPort = 8889")
        stored = restore(edited, TOML, "toml")
        self.assertEqual(stored, TOML.replace("localPort = 8888", "localPort = 8889"))

    def test_body_with_secrets_in_full(self):
        body = TOML.replace("web-pw", "new-pw")
        self.assertEqual(restore(body, TOML, "toml"), body)

    def test_one_secret_rewritten_others_kept(self):
        """A body that writes one secret anew and keeps the others
        redacted: each redacted value is matched by its key name."""
        shown, _ = redact(TOML, "toml")
        body = shown.replace('httpPassword = "<redacted>"', 'httpPassword = "new"')
        self.assertEqual(restore(body, TOML, "toml"), TOML.replace('"web-pw"', '"new"'))

    def test_extra_redacted_value_refused(self):
        shown, _ = redact(TOML, "toml")
        body = shown + '\n[[proxies]]\nname = "b"\nhttpPassword = "<redacted>"\n'
        with self.assertRaises(RedactionError) as caught:
            restore(body, TOML, "toml")
        self.assertIn(
            "2 redacted 'httpPassword' values where the file has 1",
            str(caught.exception),
        )
