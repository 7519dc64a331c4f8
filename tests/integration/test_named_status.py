"""
https and tcpmux proxies in the server's dashboard JSON (``/api/proxy/
https``, ``/api/proxy/tcpmux``, ``/api/serverinfo``), its Prometheus
metrics (traffic and connections counted per proxy) and the client's
admin ``/api/status``.
"""

from prometheus_client import generate_latest
from twisted.trial.unittest import TestCase

from labrelay.client.admin import status_document
from labrelay.server.dashboard_api import DashboardApi
from labrelay.server.dashboard_metrics import metrics_registry
from labrelay.server.tcpmux import CONNECT_OK
from tests.integration.test_https_vhost import curl
from tests.integration.test_tcpmux import connect, until
from tests.support.harness import Client, async_test, echo_server, within
from tests.support.named_ports import (
    NamedRelay,
    ca_file,
    named_proxy,
    raw_user,
    tls_backend,
)


class NamedProxiesInStatus(TestCase):
    @async_test
    async def test_dashboard_metrics_and_admin_status(self):
        relay = await NamedRelay(self).start()
        tls = tls_backend(self, ["tb.gpu1.example.test"])
        proxies = named_proxy(
            "tensorboard", "https", tls, custom_domains="tb.gpu1.example.test"
        ) + named_proxy(
            "ssh-gpu1",
            "tcpmux",
            echo_server(self),
            multiplexer="httpconnect",
            subdomain="gpu1",
        )
        client = await Client(self, relay.port, proxies).start()
        for name in ("tensorboard", "ssh-gpu1"):
            await within(client.client.when_proxy_status(name, "running"))
        code, _, err = await curl(
            self, "tb.gpu1.example.test", relay.https_port, ca_file(self)
        )
        self.assertEqual(code, 0, err)
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("gpu1.lab.example.test:22", extra=b"ping"))
        await until(user, len(CONNECT_OK) + 4)

        api = DashboardApi(relay.server.context)
        info = api.server_info()
        self.assertEqual(info["vhost_https_port"], 8443)
        self.assertEqual(info["tcpmux_httpconnect_port"], 1337)
        self.assertEqual(info["proxy_type_count"], {"https": 1, "tcpmux": 1})
        (https,) = api.proxies("https")["proxies"]
        self.assertEqual(https["name"], "tensorboard")
        self.assertEqual(https["conf"]["custom_domains"], ["tb.gpu1.example.test"])
        self.assertEqual(https["status"], "online")
        (tcpmux,) = api.proxies("tcpmux")["proxies"]
        self.assertEqual(tcpmux["conf"]["multiplexer"], "httpconnect")
        self.assertEqual(tcpmux["conf"]["subdomain"], "gpu1")
        self.assertEqual(tcpmux["cur_conns"], 1)

        metrics = generate_latest(metrics_registry(relay.server.context)).decode()
        self.assertIn('frp_server_proxy_counts{type="https"} 1.0', metrics)
        self.assertIn('frp_server_proxy_counts{type="tcpmux"} 1.0', metrics)
        self.assertIn(
            'frp_server_connection_counts{name="ssh-gpu1",type="tcpmux"} 1.0', metrics
        )
        traffic = [
            line
            for line in metrics.splitlines()
            if line.startswith('frp_server_traffic_in{name="tensorboard"')
        ]
        self.assertEqual(len(traffic), 1)
        self.assertGreater(float(traffic[0].split()[-1]), 0)

        status = status_document(client.client)
        self.assertEqual(
            [(e["name"], e["status"], e["remote_addr"]) for e in status["https"]],
            [("tensorboard", "running", f"tb.gpu1.example.test:{relay.https_port}")],
        )
        self.assertEqual(
            [(e["name"], e["remote_addr"]) for e in status["tcpmux"]],
            [("ssh-gpu1", f"gpu1.lab.example.test:{relay.tcpmux_port}")],
        )
