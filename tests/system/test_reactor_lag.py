# -*- test-case-name: tests.system.test_reactor_lag -*-
"""
A NewProxy never stalls the relay: measured on a real ``twistd
labrelay-server``.

While a hostile logged-in client (written here from labrelay's protocol
modules, tcp_mux on) sends the worst ``type = http`` NewProxy messages
frp's 10 KiB frame limit allows, back to back, and then disconnects, a
probe (another logged-in client) sends a Ping every few milliseconds on
its control connection and times each Pong.  The server answers a Ping as
soon as its reactor gets a turn, so the largest round trip bounds the
longest the reactor was blocked (plus loopback and this process).  Beyond
the worst round trip of an idle stretch just before, it must stay under
:data:`MAX_LAG` in at least one of :data:`ATTEMPTS` rounds: other
processes share the machine's cores and hold any process off a core now
and then, while a real stall (the quadratic route table's minute) fails
every round.

The messages: one that packs 330 domains x 330 locations (108,900 routes;
on a quadratic route table it blocked the reactor for more than a minute),
which the per-proxy limits refuse; then 100 proxies of 100 domains x 10
long locations each, every one at the ``max_routes_per_proxy`` default of
1,000 routes (100,000 routes in all, the ``max_routes_total`` default);
then the logout that removes them all.  The best round's figures go to
test.log ("reactor lag ...").
"""

import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.framing import MAX_BODY_LENGTH, encode_message

from ..support.frp_peer import FrpPeer
from ..support.harness import TOKEN, async_test, wait_until, within
from ..support.processes import free_port, server_ini, twistd, write_config

#: The longest a probe round trip may take, seconds.
MAX_LAG = 0.050
#: Rounds of registration and logout; the best one counts.
ATTEMPTS = 5
#: How often the probe sends, seconds.
PROBE_INTERVAL = 0.005

_log = Logger()


class PingProbe(FrpPeer):
    """A logged-in client's control connection that sends a Ping every
    PROBE_INTERVAL (one at a time) and times each Pong: the server's
    reactor answers it as soon as it gets a turn.  ``worst()`` counts a
    pending Pong as its age."""

    def __init__(self):
        super().__init__()
        self.rtts = []
        self._sent = None
        self._loop = LoopingCall(self._tick)
        self.closed.addBoth(self._stop_loop)

    def start(self):
        self._loop.start(PROBE_INTERVAL)

    def _tick(self):
        if self._sent is None:
            self._sent = time.monotonic()
            self.send(messages.Ping())

    def dataReceived(self, data):
        super().dataReceived(data)
        self._decode()
        if (
            any(isinstance(m, messages.Pong) for m in self.messages)
            and self._sent is not None
        ):
            self.rtts.append(time.monotonic() - self._sent)
            self._sent = None
        del self.messages[:]

    def _stop_loop(self, result):
        if self._loop.running:
            self._loop.stop()
        return result

    def mark(self) -> int:
        return len(self.rtts)

    def worst(self, since=0) -> float:
        pending = [time.monotonic() - self._sent] if self._sent else []
        return max(self.rtts[since:] + pending, default=0.0)


def http_new_proxy(name: str, domains: list, locations: list):
    message = messages.NewProxy(
        proxy_name=name, proxy_type="http", custom_domains=domains, locations=locations
    )
    assert len(encode_message(message)) - 9 <= MAX_BODY_LENGTH
    return message


def freezer():
    """330 x 330 short keys in one 10 KiB NewProxy."""
    return http_new_proxy(
        "freezer", [f"d{i}.x" for i in range(330)], [f"/{i}" for i in range(330)]
    )


def widest(n: int):
    """100 domains x 10 locations of ~480 characters: 1,000 long routes,
    as close to 10 KiB as it gets."""
    return http_new_proxy(
        f"wide{n}",
        [f"{n}-{i:03d}-{'a' * 24}.example.test" for i in range(100)],
        [f"/{j}{'x' * 480}" for j in range(10)],
    )


class ReactorLagTests(TestCase):
    timeout = 180

    @async_test
    async def test_worst_new_proxies_never_block_the_reactor(self):
        """While the worst 10 KiB NewProxy messages are refused, and
        registered, and their client logs out, no Pong to another client
        takes MAX_LAG or more."""
        port, vhost_port = free_port(), free_port()
        path = write_config(
            self,
            "frps.ini",
            server_ini(port, token=TOKEN, extra=f"vhost_http_port = {vhost_port}\n"),
        )
        server = twistd(self, "labrelay-server", path)
        await server.wait_for(rf"starting on {vhost_port}$")
        probe, _ = await self.hostile(port, PingProbe())
        probe.start()
        await within(wait_until(lambda: len(probe.rtts) >= 50))

        # Other processes share this machine's cores and can hold any
        # process off a core for tens of milliseconds.  So each round
        # first measures the probe while nothing happens (as long as the
        # round's busy phase lasted last time) and counts, per phase, the
        # round trip beyond that noise; and the best of ATTEMPTS rounds
        # counts.  A real stall (the quadratic table's minute) fails every
        # round.
        rounds = []
        busy = 0.3
        for _ in range(ATTEMPTS):
            figures = await self.round(server, port, probe, busy)
            busy = figures.pop("busy seconds")
            rounds.append(figures)
            if max(self.excess(figures).values()) < MAX_LAG:
                break
        best = min(rounds, key=lambda r: max(self.excess(r).values()))
        _log.info(
            "reactor lag (max Ping round trip, ms; {n} rounds): {figures}",
            n=len(rounds),
            figures={k: round(v * 1000, 1) for k, v in best.items()},
        )
        for what, lag in self.excess(best).items():
            self.assertLess(lag, MAX_LAG, f"{what}: {rounds}")

    @staticmethod
    def excess(figures: dict) -> dict:
        """Each phase's worst round trip beyond the idle one."""
        return {
            what: lag - figures["idle"]
            for what, lag in figures.items()
            if what != "idle"
        }

    async def hostile(self, port, peer=None):
        """A logged-in yamux client written by hand: (peer, session)."""
        session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
        await within(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                Factory.forProtocol(lambda: session)
            )
        )

        def close():
            closed = session.when_closed()
            session.close()
            return within(closed)

        self.addCleanup(close)
        peer = peer or FrpPeer()
        session.open_stream(peer)
        await peer.log_in()
        return peer, session

    async def round(self, server, port, probe, idle_seconds) -> dict:
        """The probe idle for *idle_seconds*; the 330 x 330 NewProxy; 100
        widest NewProxy messages back to back; the logout: the worst probe
        round trip of each, and how long the busy part took."""
        lags = {}
        mark = probe.mark()
        await deferLater(reactor, idle_seconds, lambda: None)
        lags["idle"] = probe.worst(mark)
        started = time.monotonic()
        peer, session = await self.hostile(port)
        mark = probe.mark()
        peer.send(freezer())
        [refused] = await within(peer.wait_messages(messages.NewProxyResp), 20)
        self.assertIn("max_domains_per_proxy", refused.error)
        lags["330x330 refused"] = probe.worst(mark)
        already = len(
            [m for m in peer.messages if isinstance(m, messages.NewProxyResp)]
        )
        mark = probe.mark()
        for n in range(100):
            peer.send(widest(n))
            # one message per turn: this process must not block its own
            # reactor (the probe's clock) while it encrypts a megabyte
            await deferLater(reactor, 0, lambda: None)
        answers = await within(
            peer.wait_messages(messages.NewProxyResp, already + 100), 60
        )
        self.assertEqual([a.error for a in answers[already:] if a.error], [])
        lags["100 x 1,000 routes"] = probe.worst(mark)
        mark, output = probe.mark(), server.mark()
        closed = session.when_closed()
        session.close()
        await within(closed)
        # the server logs each proxy's close; its logout line ends it
        await server.wait_for(r"client logout", since=output, timeout=30)
        await within(wait_until(lambda: len(probe.rtts) >= mark + 20))
        lags["logout"] = probe.worst(mark)
        lags["busy seconds"] = time.monotonic() - started
        return lags
