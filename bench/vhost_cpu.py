#!/usr/bin/env python3
"""
CPU time of labrelay's HTTP vhost code per request, in one process, on
memory transports.

    python3 bench/vhost_cpu.py [--requests N] [--tree DIR ...] [--profile FILE]

One user connection sends keep-alive ``GET`` requests to one ``type = http``
proxy; a fake work connection answers each with a 100-byte response, so
every request takes the whole front -> exchange -> idle work connection
path (h11 both ways, routing, header rewriting, the access log written
through labrelay's escaping observer to /dev/null), without sockets, TLS,
yamux or the client process.  Process CPU time per request is stable on a
loaded machine, unlike wrk's numbers; each ``--tree`` runs in its own
process, so a before/after pair is one command.  ``--profile FILE`` saves
a cProfile of the first tree's run.  See bench/README.rst.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

REQUEST = (
    b"GET /small HTTP/1.1\r\nHost: web.bench.test\r\n"
    b"User-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 100\r\nDate: Sat, 05 Dec 2026 08:00:00 GMT\r\n"
    b"Server: bench\r\n\r\n" + b"x" * 100
)


def measure(requests: int, profile: str) -> None:
    """Run in a child process whose sys.path starts with the tree."""
    import time

    from twisted.internet import defer
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from labrelay.config import parse_server_config
    from labrelay.logs import EscapingObserver, LevelFilteredObserver
    from labrelay.protocol import messages
    from labrelay.server.vhost import Vhost
    from labrelay.throttle import PasswordThrottle
    from labrelay.tracking import ConnectionSet

    class Attrs:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class Work:
        """A started work connection on a memory transport."""

        def __init__(self):
            self.transport = StringTransport()
            self.alive = True
            self.sink = None

        def send(self, message):
            pass

        def take_early_data(self):
            return b""

    sink = open(os.devnull, "w")
    globalLogBeginner.beginLoggingTo(
        [LevelFilteredObserver(EscapingObserver(textFileLogObserver(sink)), "info")],
        redirectStandardIO=False,
        discardBuffer=True,
    )
    clock = Clock()
    clock.advance(1.8e9)
    config = parse_server_config(
        "[common]\nvhost_http_port = 80\nsubdomain_host = bench.test\n"
    )
    vhost = Vhost(
        Attrs(
            config=config,
            clock=clock,
            connections=ConnectionSet(),
            throttle=PasswordThrottle(clock),
            log_auth_failure=lambda *args: None,
        )
    )
    works = []

    def get():
        works.append(Work())
        return defer.succeed(works[-1])

    control = Attrs(
        login=Attrs(pool_count=1), closed=False, pool=Attrs(get=get), run_id="r"
    )
    proxy = vhost.create_proxy(
        control,
        messages.NewProxy(proxy_name="web", proxy_type="http", subdomain="web"),
    )
    proxy.start()
    user = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 5555))
    connection = vhost.factory.buildProtocol(None)
    connection.makeConnection(user)

    def one():
        connection.dataReceived(REQUEST)
        work = works[-1]
        work.sink.forward(work, RESPONSE)
        work.transport.clear()
        user.clear()

    for _ in range(500):  # warm up
        one()
    start = time.process_time()
    for _ in range(requests):
        one()
    elapsed = time.process_time() - start
    if len(works) != 1:
        raise SystemExit(f"{len(works)} work connections for one keep-alive user")
    print(f"{1e6 * elapsed / requests:.1f}")
    if profile:
        import cProfile

        cProfile.runctx(
            "for _ in range(requests): one()",
            globals(),
            {"one": one, "requests": min(requests, 5000)},
            profile,
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument(
        "--tree",
        action="append",
        help="labrelay source tree (repeatable; default: this working tree)",
    )
    ap.add_argument("--profile", default="", help="save a cProfile here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        measure(args.requests, args.profile)
        return 0
    trees = [os.path.abspath(t) for t in args.tree or [REPO]]
    print(f"vhost path CPU per request, {args.requests} keep-alive GETs:")
    for i, tree in enumerate(trees):
        argv = [sys.executable, os.path.abspath(__file__), "--child"]
        argv += ["--requests", str(args.requests)]
        if args.profile and i == 0:
            argv += ["--profile", os.path.abspath(args.profile)]
        env = dict(os.environ, PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tree)
        if done.returncode:
            print(f"  {tree}: failed: {(done.stderr or done.stdout).strip()[-300:]}")
            continue
        print(f"  {float(done.stdout.split()[0]):7.1f} us  {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
