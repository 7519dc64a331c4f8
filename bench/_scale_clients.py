"""
The load generator of ``bench/scale_bench.py``: many simulated frp clients
in one process, built from labrelay's own wire code (the v1 message
framing and messages of :mod:`labrelay.protocol`, the yamux frames of
:mod:`labrelay.mux.frames`, the control channel's AES-128-CFB and the TLS
dial with frp's ``0x17`` head byte of :mod:`labrelay.endpoints`).

    python3 bench/_scale_clients.py --server-port P --ports FILE --first I --count N

Each simulated client does what frpc does with ``tcp_mux = true``: one TCP
(by default TLS) connection to the relay's bind port carrying a yamux
session; stream 1 is the control stream (Login, then, encrypted, one
``NewProxy`` of type tcp on its own ``remote_port``); the relay's
``ReqWorkConn`` is answered by opening a work stream that sends
``NewWorkConn`` and, after ``StartWorkConn``, echoes every byte it gets
(the "local service" is an echo in the client itself, so no backend
process is needed).  Heartbeats: an encrypted ``Ping`` on the control
stream every ``--heartbeat`` seconds (frpc's ``heartbeat_interval``), a
yamux keepalive Ping every ``--keepalive`` seconds (yamux's
``KeepAliveInterval`` as frp sets it), and every yamux Ping of the relay
answered; the clients are spread evenly over each interval.

It talks to ``scale_bench.py`` over stdin/stdout, one line each way:
it prints ``READY`` once its reactor runs, starts logging in at ``GO``,
prints ``DONE <ok> <failed> <seconds> <first error>`` when every client
has logged in or failed, and answers ``STATUS`` with ``STATUS <alive>
<pongs> <work streams> <echoed bytes> <lost> <first error>``.  It exits
when its stdin closes or after ``--lifetime`` seconds.
"""

import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True

from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()

from twisted.internet import reactor, stdio, task  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

from labrelay.endpoints import client_endpoint  # noqa: E402
from labrelay.mux.frames import (  # noqa: E402
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameError,
    FrameParser,
    encode_header,
)
from labrelay.protocol import messages  # noqa: E402
from labrelay.protocol.auth import privilege_key  # noqa: E402
from labrelay.protocol.crypto import (  # noqa: E402
    StreamDecryptor,
    StreamEncryptor,
    derive_key,
)
from labrelay.protocol.framing import MessageParser, encode_message  # noqa: E402
from labrelay.tls import client_tls_options  # noqa: E402

#: frp's yamux receive window (``MaxStreamWindowSize``): a new stream's SYN
#: grants the peer this much beyond the initial 256 KiB.
MAX_WINDOW = 6 * 1024 * 1024
#: received bytes on a stream after which the window is granted back
GRANT_AFTER = 64 * 1024
FRP_VERSION = "0.70.0"


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class WorkStream:
    """One work stream: NewWorkConn, then echo after StartWorkConn."""

    __slots__ = ("parser", "started", "received")

    def __init__(self):
        self.parser = MessageParser()
        self.started = False
        self.received = 0


class SimClient(Protocol):
    """One simulated frpc: a yamux session with a control stream and the
    work streams the relay asks for."""

    def __init__(self, fleet, index, remote_port):
        self.fleet = fleet
        self.index = index
        self.remote_port = remote_port
        self.run_id = ""
        self.state = "connecting"  # -> login -> proxy -> running -> lost
        self._frames = None
        self._control = None
        self._encryptor = None
        self._decryptor = None
        self._control_received = 0
        self._work = {}
        self._next_stream = 3
        self.started = 0.0

    # yamux

    def _frame(self, frame_type, flags, stream_id, length, payload=b""):
        self.transport.write(
            encode_header(frame_type, flags, stream_id, length) + payload
        )

    def _open_stream(self, stream_id, first_data):
        self._frame(
            TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, MAX_WINDOW - INITIAL_WINDOW
        )
        self._frame(TYPE_DATA, 0, stream_id, len(first_data), first_data)

    def _control_send(self, message):
        data = encode_message(message)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        self._frame(TYPE_DATA, 0, 1, len(data), data)

    def connectionMade(self):
        self.state = "login"
        self._frames = FrameParser(max_data_length=MAX_WINDOW)
        self._control = MessageParser()
        now = int(time.time())
        login = messages.Login(
            version=FRP_VERSION,
            hostname="scale-bench",
            os="linux",
            arch="amd64",
            privilege_key=privilege_key(self.fleet.token, now),
            timestamp=now,
            pool_count=self.fleet.pool_count,
        )
        self._open_stream(1, encode_message(login))

    def dataReceived(self, data):
        try:
            frames = self._frames.feed(data)
        except FrameError as e:
            self._fail(f"yamux: {e}")
            return
        for frame in frames:
            header = frame.header
            if header.type == TYPE_PING:
                if header.flags & FLAG_SYN:
                    self._frame(TYPE_PING, FLAG_ACK, 0, header.length)
                continue
            if header.type == TYPE_GO_AWAY:
                self._fail(f"relay sent GoAway({header.length})")
                return
            sid = header.stream_id
            if header.flags & FLAG_RST:
                if sid == 1:
                    self._fail("relay reset the control stream")
                    return
                self._work.pop(sid, None)
                continue
            if sid == 1:
                if frame.payload:
                    self._control_data(frame.payload)
                if header.flags & FLAG_FIN:
                    self._fail("relay closed the control stream")
                    return
            else:
                work = self._work.get(sid)
                if work is None:
                    continue
                if frame.payload:
                    self._work_data(sid, work, frame.payload)
                if header.flags & FLAG_FIN:
                    self._frame(TYPE_WINDOW_UPDATE, FLAG_FIN, sid, 0)
                    del self._work[sid]
            if self.state == "lost":
                return

    def connectionLost(self, reason):
        if self.state != "lost":
            self._fail(f"connection lost: {reason.getErrorMessage()}")

    def _fail(self, why):
        previous, self.state = self.state, "lost"
        self.fleet.client_failed(self, previous, why)
        if self.transport is not None:
            self.transport.loseConnection()

    # the control stream

    def _grant(self, stream_id, received):
        if received >= GRANT_AFTER:
            self._frame(TYPE_WINDOW_UPDATE, 0, stream_id, received)
            return 0
        return received

    def _control_data(self, payload):
        self._control_received = self._grant(1, self._control_received + len(payload))
        if self._decryptor is not None:
            payload = self._decryptor.decrypt(payload)
        self._control.feed(payload)
        while self.state != "lost":
            message = self._control.next_message()
            if message is None:
                return
            self._on_message(message)

    def _on_message(self, message):
        kind = type(message)
        if kind is messages.LoginResp:
            if message.error:
                self._fail(f"login refused: {message.error}")
                return
            self.run_id = message.run_id
            key = derive_key(self.fleet.token)
            self._encryptor = StreamEncryptor(key)
            self._decryptor = StreamDecryptor(key)
            rest = self._control.take_rest()
            self._control.feed(self._decryptor.decrypt(rest))
            self.state = "proxy"
            self._control_send(
                messages.NewProxy(
                    proxy_name=f"scale{self.index}",
                    proxy_type="tcp",
                    remote_port=self.remote_port,
                )
            )
        elif kind is messages.NewProxyResp:
            if message.error:
                self._fail(f"proxy refused: {message.error}")
                return
            self.state = "running"
            self.fleet.client_running(self)
        elif kind is messages.ReqWorkConn:
            self._open_work()
        elif kind is messages.Pong:
            if message.error:
                self._fail(f"Pong error: {message.error}")
                return
            self.fleet.pongs += 1

    def heartbeat(self):
        if self.state == "running":
            now = int(time.time())
            self._control_send(
                messages.Ping(
                    privilege_key=privilege_key(self.fleet.token, now), timestamp=now
                )
            )

    def keepalive(self):
        if self.state == "running":
            self._frame(TYPE_PING, FLAG_SYN, 0, self.index & 0x7FFFFFFF)

    # work streams

    def _open_work(self):
        sid = self._next_stream
        self._next_stream += 2
        now = int(time.time())
        self._work[sid] = WorkStream()
        self.fleet.work_streams += 1
        self._open_stream(
            sid,
            encode_message(
                messages.NewWorkConn(
                    run_id=self.run_id,
                    privilege_key=privilege_key(self.fleet.token, now),
                    timestamp=now,
                )
            ),
        )

    def _work_data(self, sid, work, payload):
        work.received = self._grant(sid, work.received + len(payload))
        if not work.started:
            work.parser.feed(payload)
            message = work.parser.next_message()
            if message is None:
                return
            if not isinstance(message, messages.StartWorkConn) or message.error:
                self._frame(TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0)
                del self._work[sid]
                return
            work.started = True
            payload = work.parser.take_rest()
            if not payload:
                return
        # the local service: an echo
        self.fleet.echoed += len(payload)
        self._frame(TYPE_DATA, 0, sid, len(payload), payload)


class _OneProtocol(Factory):
    noisy = False

    def __init__(self, client):
        self.client = client

    def buildProtocol(self, addr):
        return self.client


class Fleet:
    """The clients of this process and their bookkeeping."""

    def __init__(self, args, ports, out):
        self.args = args
        self.token = args.token
        self.pool_count = args.pool_count
        self.out = out
        self.endpoint = client_endpoint(
            reactor,
            server_addr="127.0.0.1",
            server_port=args.server_port,
            dial_timeout=30,
            tls_enable=args.tls,
            tls_options=client_tls_options("127.0.0.1") if args.tls else None,
            send_tls_first_byte=True,
        )
        self.clients = [
            SimClient(self, args.first + i, port) for i, port in enumerate(ports)
        ]
        self.pending = list(reversed(self.clients))
        self.in_flight = 0
        self.ok = self.failed = self.lost = 0
        self.pongs = self.work_streams = self.echoed = 0
        self.first_error = ""
        self.t0 = None
        self.done = False
        self.tick = 0

    def go(self):
        self.t0 = time.monotonic()
        self._start_more()
        self._beat = task.LoopingCall(self._heartbeats)
        self._beat.start(1.0, now=False)

    def _start_more(self):
        while self.pending and self.in_flight < self.args.concurrency:
            client = self.pending.pop()
            client.started = time.monotonic()
            self.in_flight += 1
            d = self.endpoint.connect(_OneProtocol(client))
            d.addErrback(self._connect_failed, client)
        self._check_done()

    def _connect_failed(self, failure, client):
        client.state = "lost"
        self.client_failed(
            client, "connecting", f"connect: {failure.getErrorMessage()}"
        )

    def client_running(self, client):
        self.in_flight -= 1
        self.ok += 1
        self._start_more()

    def client_failed(self, client, previous, why):
        if not self.first_error:
            self.first_error = f"client {client.index} ({previous}): {why}"
        if previous == "running":
            self.lost += 1
            return
        self.in_flight -= 1
        self.failed += 1
        self._start_more()

    def _check_done(self):
        if self.done or self.pending or self.in_flight:
            return
        self.done = True
        elapsed = time.monotonic() - self.t0
        self.out(f"DONE {self.ok} {self.failed} {elapsed:.3f} {self.first_error}")

    def _heartbeats(self):
        """Each second, the clients whose turn it is (index modulo the
        interval) send their Ping and yamux keepalive."""
        self.tick += 1
        hb, ka = self.args.heartbeat, self.args.keepalive
        late = time.monotonic() - self.args.login_timeout
        for client in self.clients:
            if client.state in ("login", "proxy") and client.started < late:
                client._fail(f"not logged in within {self.args.login_timeout:g}s")
                continue
            if hb > 0 and client.index % hb == self.tick % hb:
                client.heartbeat()
            if ka > 0 and client.index % ka == self.tick % ka:
                client.keepalive()

    def status(self):
        alive = sum(1 for c in self.clients if c.state == "running")
        return (
            f"STATUS {alive} {self.pongs} {self.work_streams} {self.echoed} "
            f"{self.lost} {self.first_error}"
        )


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, fleet_factory):
        self.fleet_factory = fleet_factory
        self.fleet = None

    def out(self, line):
        self.sendLine(line.encode("utf-8", "replace"))

    def connectionMade(self):
        self.fleet = self.fleet_factory(self.out)
        self.out(f"READY {raise_fd_limit()}")

    def lineReceived(self, line):
        command = line.strip().decode()
        if command == "GO":
            self.fleet.go()
        elif command == "STATUS":
            self.out(self.fleet.status())

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-port", type=int, required=True)
    ap.add_argument("--ports", required=True, help="JSON file: the remote ports")
    ap.add_argument(
        "--first", type=int, required=True, help="index of the first client"
    )
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--token", default="bench-token")
    ap.add_argument("--no-tls", dest="tls", action="store_false")
    ap.add_argument("--pool-count", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=64, help="logins in flight")
    ap.add_argument("--heartbeat", type=int, default=30)
    ap.add_argument("--keepalive", type=int, default=30)
    ap.add_argument("--login-timeout", type=float, default=60.0)
    ap.add_argument("--lifetime", type=float, default=900.0)
    args = ap.parse_args()
    raise_fd_limit()
    with open(args.ports) as f:
        ports = json.load(f)[args.first : args.first + args.count]
    stdio.StandardIO(Commands(lambda out: Fleet(args, ports, out)))
    reactor.callLater(args.lifetime, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
