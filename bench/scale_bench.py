#!/usr/bin/env python3
"""
Many clients on one relay: N simulated frp clients, one tcp proxy each.

    python3 bench/scale_bench.py [--quick] [--clients 1000,5000,10000] [--frps PATH]

For each N, a real ``twistd -n labrelay-server`` (and, with ``--frps``,
a real frps) gets N clients from a few load-generator processes
(``bench/_scale_clients.py``, which speak frp's protocol with labrelay's
own wire code: TLS with the 0x17 head byte, yamux, Login, encrypted
control stream, NewProxy, NewWorkConn).  Each client registers one tcp
proxy on its own remote port and keeps heartbeating.  Reported per N: the
time to log all N in, the relay's resident memory once they are in, the
relay's CPU while they only heartbeat, and whether a user connection to
remote ports still reaches its client and comes back (echo through a work
stream).  See bench/README.rst, section "Scale: scale_bench.py".
"""

import argparse
import json
import math
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in bench/

import _load  # noqa: E402
import tunnel_bench  # noqa: E402

TOKEN = "bench-token"
#: remote ports are chosen in this range (below Linux's default ephemeral
#: range, 32768-60999, which the clients' own sockets use)
PORT_RANGE = (10000, 32767)
#: file descriptors a relay needs besides two per client (its control
#: connection and its proxy's listener): stdio, log, epoll, listeners, ...
FD_RESERVE = 64
#: clients per load-generator process
PER_WORKER = 2500
MiB = 1 << 20


def raise_fd_limit():
    """The soft RLIMIT_NOFILE of this process (inherited by every process
    the bench starts) raised to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_ports(count, avoid=()):
    """*count* ports of :data:`PORT_RANGE` nobody listens on (bound and
    released one by one to check)."""
    ports = []
    for port in range(PORT_RANGE[0], PORT_RANGE[1] + 1):
        if len(ports) == count:
            break
        if port in avoid:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
    if len(ports) < count:
        raise RuntimeError(
            f"only {len(ports)} free ports in {PORT_RANGE[0]}-{PORT_RANGE[1]}"
        )
    return ports


# -- the relays ------------------------------------------------------------------


class Relay(tunnel_bench.Path):
    """A relay server the simulated clients log in to."""

    def start_server(self, bind_port):
        raise NotImplementedError


class LabrelayRelay(Relay):
    twistd = tunnel_bench.Labrelay.twistd

    def __init__(self, ctx, args):
        super().__init__(ctx)
        self.label = "labrelay"
        self.args = args

    def start_server(self, bind_port):
        frps = os.path.join(self.ctx.tmp, "labrelay-frps.ini")
        n = self.args.current_n
        with open(frps, "w") as f:
            f.write(
                "[common]\nbind_addr = 127.0.0.1\n"
                f"bind_port = {bind_port}\ntoken = {TOKEN}\n"
                "proxy_bind_addr = 127.0.0.1\n"
                f"allow_ports = {PORT_RANGE[0]}-{PORT_RANGE[1]}\n"
                # labrelay's own bounds, raised for one source with N clients
                "max_clients_per_source = 0\n"
                "max_clients_per_user = 0\n"
                f"max_proxies_total = {max(10000, 2 * n)}\n"
                f"max_tracked_proxies = {max(4096, 2 * n)}\n"
                f"max_unauthenticated_per_source = {max(32, 2 * self.args.concurrency)}\n"
                f"max_unauthenticated_connections = {max(1024, 2 * self.args.concurrency)}\n"
            )
        log = "labrelay-server.log"
        server = self.spawn(
            self.twistd() + ["-n", "--pidfile=", "labrelay-server", "-c", frps], log
        )
        self.wait_for(
            "server listening", lambda: _load.port_open(bind_port), server, log
        )
        self.cpu_roots = [server.pid]


class FrpsRelay(Relay):
    def __init__(self, ctx, args):
        super().__init__(ctx)
        self.label = "frps"
        self.args = args

    def start_server(self, bind_port):
        toml = os.path.join(self.ctx.tmp, "frps.toml")
        with open(toml, "w") as f:
            f.write(
                f'bindAddr = "127.0.0.1"\nbindPort = {bind_port}\n'
                f"auth.token = {json.dumps(TOKEN)}\n"
                'proxyBindAddr = "127.0.0.1"\n'
                f"allowPorts = [{{ start = {PORT_RANGE[0]}, end = {PORT_RANGE[1]} }}]\n"
                'log.to = "console"\nlog.level = "info"\n'
                "log.disablePrintColor = true\n"
            )
        log = "frps.log"
        server = self.spawn([self.ctx.frps, "-c", toml], log, cwd=self.ctx.tmp)
        self.wait_for("frps listening", lambda: _load.port_open(bind_port), server, log)
        self.cpu_roots = [server.pid]


# -- the load generators ---------------------------------------------------------


class Workers:
    """The load-generator processes of one row, driven over their pipes."""

    def __init__(self, ctx, path, args, bind_port, ports_file, n):
        self.procs = []
        count = math.ceil(n / PER_WORKER)
        share = math.ceil(n / count)
        concurrency = max(1, args.concurrency // count)
        for first in range(0, n, share):
            argv = [
                sys.executable,
                os.path.join(HERE, "_scale_clients.py"),
                "--server-port",
                str(bind_port),
                "--ports",
                ports_file,
                "--first",
                str(first),
                "--count",
                str(min(share, n - first)),
                "--token",
                TOKEN,
                "--pool-count",
                str(args.pool_count),
                "--concurrency",
                str(concurrency),
                "--heartbeat",
                str(args.heartbeat),
                "--keepalive",
                str(args.keepalive),
                "--lifetime",
                str(args.hard + 60),
            ]
            if not args.tls:
                argv.append("--no-tls")
            log = open(os.path.join(ctx.tmp, f"clients-{first}.log"), "wb")
            try:
                p = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=ctx.env,
                    cwd=REPO,
                    start_new_session=True,
                )
            finally:
                log.close()
            self.procs.append(p)
            ctx.started.append(p)
            path.procs.append(p)
        self._buffers = {p.stdout.fileno(): b"" for p in self.procs}

    def lines(self, prefix, timeout):
        """One line starting with *prefix* from every worker (in worker
        order); raises RuntimeError when one is missing after *timeout*."""
        got = {}
        deadline = time.monotonic() + timeout
        by_fd = {p.stdout.fileno(): p for p in self.procs}
        while len(got) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{len(self.procs) - len(got)} load generator(s) gave no "
                    f"{prefix} line within {timeout:.0f} s"
                )
            waiting = [fd for fd in by_fd if fd not in got]
            readable, _, _ = select.select(waiting, [], [], min(left, 1.0))
            for fd in readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(
                        f"a load generator exited (code {by_fd[fd].wait()})"
                    )
                self._buffers[fd] += chunk
                while b"\n" in self._buffers[fd]:
                    line, self._buffers[fd] = self._buffers[fd].split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip()
                    if text.startswith(prefix) and fd not in got:
                        got[fd] = text
        return [got[p.stdout.fileno()] for p in self.procs]

    def send(self, command):
        for p in self.procs:
            p.stdin.write(command.encode() + b"\n")
            p.stdin.flush()

    def pids(self):
        return [p.pid for p in self.procs]


def user_connection(port, size=1024, timeout=10.0):
    """Connect to a remote port, send *size* random bytes, read them back:
    (ok, milliseconds, note)."""
    data = os.urandom(size)
    t0 = time.perf_counter()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(data)
            back = _load._recv_exact(s, size)
        finally:
            s.close()
    except (OSError, _load.BenchError) as e:
        return False, 0.0, str(e) or type(e).__name__
    ms = (time.perf_counter() - t0) * 1000.0
    if back != data:
        return False, ms, "echo returned different bytes"
    return True, ms, ""


def measure(relay, args, n, ports):
    """One row: log N clients in to *relay* and measure it."""
    row = {"label": relay.label, "n": n}
    ctx = relay.ctx
    args.current_n = n
    bind_port = _load.free_port()
    relay.start_server(bind_port)
    ports_file = os.path.join(ctx.tmp, "ports.json")
    with open(ports_file, "w") as f:
        json.dump(ports, f)
    time.sleep(1.0)
    row["rss0"] = _load.rss_kib(relay.cpu_roots)[0] / 1024.0
    workers = Workers(ctx, relay, args, bind_port, ports_file, n)
    workers.lines("READY", 60)
    cpu0 = _load.cpu_seconds(relay.cpu_roots)
    t0 = time.monotonic()
    workers.send("GO")
    done = workers.lines("DONE", args.login_timeout(n))
    row["login_secs"] = time.monotonic() - t0
    row["login_cpu"] = _load.cpu_seconds(relay.cpu_roots) - cpu0
    ok = failed = 0
    errors = []
    for line in done:
        parts = line.split(None, 4)
        ok += int(parts[1])
        failed += int(parts[2])
        if len(parts) > 4 and parts[4]:
            errors.append(parts[4])
    row["ok"], row["failed"], row["errors"] = ok, failed, errors

    time.sleep(args.settle)
    row["rss"] = _load.rss_kib(relay.cpu_roots)[0] / 1024.0
    cpu0, t0 = _load.cpu_seconds(relay.cpu_roots), time.monotonic()
    gen0 = _load.cpu_seconds(workers.pids())
    time.sleep(args.idle_secs)
    wall = time.monotonic() - t0
    row["idle_cpu"] = (_load.cpu_seconds(relay.cpu_roots) - cpu0) / wall * 100.0
    row["gen_cpu"] = (_load.cpu_seconds(workers.pids()) - gen0) / wall * 100.0
    row["rss_idle"] = _load.rss_kib(relay.cpu_roots)[0] / 1024.0
    row["gen_rss"] = sum(_load.rss_kib(workers.pids())) / 1024.0

    # user connections to the first, a middle and the last client's port
    checks = []
    for index in sorted({0, n // 2, n - 1}):
        checks.append(user_connection(ports[index]))
    row["user_ok"] = sum(1 for c in checks if c[0])
    row["user_checks"] = len(checks)
    row["user_ms"] = max((c[1] for c in checks if c[0]), default=0.0)
    row["user_notes"] = [c[2] for c in checks if not c[0]]

    workers.send("STATUS")
    status = workers.lines("STATUS", 20)
    alive = pongs = echoed = 0
    for line in status:
        parts = line.split(None, 6)
        alive += int(parts[1])
        pongs += int(parts[2])
        echoed += int(parts[4])
        if len(parts) > 6 and parts[6]:
            errors.append(parts[6])
    row["alive"], row["pongs"], row["echoed"] = alive, pongs, echoed
    return row


# -- output ----------------------------------------------------------------------


def fmt_table(rows):
    table = [
        [
            "relay",
            "N",
            "logged in",
            "login s",
            "logins/s",
            "CPU ms/login",
            "RSS MiB",
            "KiB/client",
            "idle CPU %",
            "user conn",
            "alive after",
        ]
    ]
    for r in rows:
        if "skip" in r:
            table.append([r["label"], str(r.get("n", "")), r["skip"]])
            continue
        per_client = (r["rss"] - r["rss0"]) * 1024.0 / r["ok"] if r["ok"] else 0.0
        table.append(
            [
                r["label"],
                f"{r['n']:,}",
                f"{r['ok']:,}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
                f"{r['login_secs']:.1f}",
                f"{r['ok'] / r['login_secs']:.0f}" if r["login_secs"] else "-",
                f"{r['login_cpu'] * 1000.0 / r['ok']:.2f}" if r["ok"] else "-",
                f"{r['rss']:.1f}",
                f"{per_client:.1f}",
                f"{r['idle_cpu']:.1f}",
                f"ok {r['user_ok']}/{r['user_checks']} ({r['user_ms']:.1f} ms)"
                if r["user_ok"] == r["user_checks"]
                else f"FAILED {r['user_checks'] - r['user_ok']}/{r['user_checks']}",
                f"{r['alive']:,}",
            ]
        )
    return tunnel_bench.align(table, left_columns=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument(
        "--clients",
        default=None,
        help="comma-separated client counts (default 1000,5000,10000; "
        "--quick: 500,2000)",
    )
    ap.add_argument("--quick", action="store_true", help="fewer clients, shorter idle")
    ap.add_argument(
        "--no-tls",
        dest="tls",
        action="store_false",
        help="clients without TLS (default: TLS with the 0x17 head byte, frp's default)",
    )
    ap.add_argument(
        "--pool-count",
        type=int,
        default=1,
        help="pool_count of each client's Login (frpc's default: 1)",
    )
    ap.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between a client's Pings (frpc heartbeat_interval, default 30)",
    )
    ap.add_argument(
        "--keepalive",
        type=int,
        default=30,
        help="seconds between a client's yamux keepalive Pings (default 30)",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=128,
        help="logins in flight at once, over all load generators (default 128)",
    )
    ap.add_argument(
        "--idle-secs",
        type=float,
        default=None,
        help="seconds over which the idle CPU is measured (default 30, --quick 10)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds after the last login before RSS is read (default 3)",
    )
    ap.add_argument("--tree", default=REPO, help="labrelay source tree to run")
    ap.add_argument(
        "--frps", metavar="PATH", default=None, help="frps binary for frps rows"
    )
    ap.add_argument("--no-labrelay", action="store_true", help="frps rows only")
    args = ap.parse_args()
    args.tree = os.path.abspath(args.tree)
    if args.clients is None:
        args.clients = "500,2000" if args.quick else "1000,5000,10000"
    counts = [int(c.replace("_", "")) for c in args.clients.split(",") if c.strip()]
    if args.idle_secs is None:
        args.idle_secs = 10.0 if args.quick else 30.0
    if args.frps and not (os.path.isfile(args.frps) and os.access(args.frps, os.X_OK)):
        raise SystemExit(f"--frps {args.frps}: not an executable file")

    soft, hard = raise_fd_limit()
    max_n = (soft - FD_RESERVE) // 2
    notes = []
    runs = []
    for n in counts:
        if n > max_n:
            notes.append(
                f"N = {n:,} needs about {2 * n + FD_RESERVE:,} file descriptors in "
                f"the relay (a control connection and a listener per client); "
                f"RLIMIT_NOFILE is {soft:,} (hard {hard:,}), so N = {max_n:,} "
                f"was run instead"
            )
            n = max_n
        runs.append(n)

    def login_timeout(n):
        return 60.0 + n / 20.0  # s: at least 20 logins a second

    args.login_timeout = login_timeout
    relays = ([] if args.no_labrelay else ["labrelay"]) + (
        ["frps"] if args.frps else []
    )
    per_row = [login_timeout(n) + args.idle_secs + args.settle + 60 for n in runs]
    args.hard = sum(per_row) * len(relays) + 60
    ctx = tunnel_bench.start_run(args.tree, args.hard, "labrelay-scale-")
    ctx.frps = os.path.abspath(args.frps) if args.frps else None
    t_start = time.monotonic()
    other_load = _load.OtherLoad()
    rows = []
    interrupted = False
    try:
        for line in tunnel_bench.versions(args.tree)[:3]:
            print(line, flush=True)
        if args.frps:
            print(
                tunnel_bench.frp_version((ctx.frps, ctx.frps)).split(" (")[0],
                flush=True,
            )
        print(
            f"RLIMIT_NOFILE {soft:,} (hard {hard:,}): at most {max_n:,} clients per "
            f"relay; TLS {'on' if args.tls else 'off'}, tcp_mux on, pool_count "
            f"{args.pool_count}, Ping every {args.heartbeat} s, yamux keepalive every "
            f"{args.keepalive} s, {args.concurrency} logins in flight",
            flush=True,
        )
        for n in runs:
            for name in relays:
                relay = (LabrelayRelay if name == "labrelay" else FrpsRelay)(ctx, args)
                print(f"  {name} N={n:,} ...", end="", flush=True)
                t0 = time.monotonic()
                try:
                    ports = free_ports(n)
                    row = measure(relay, args, n, ports)
                    rows.append(row)
                    print(
                        f" {time.monotonic() - t0:.0f} s: {row['ok']:,} in after "
                        f"{row['login_secs']:.1f} s, RSS {row['rss']:.0f} MiB",
                        flush=True,
                    )
                except (RuntimeError, OSError, _load.BenchError) as e:
                    rows.append(
                        {
                            "label": name,
                            "n": n,
                            "skip": f"failed: {str(e).splitlines()[0]}",
                        }
                    )
                    print(f" failed: {e}", flush=True)
                    for line in relay.error_lines():
                        print(f"      {line[:300]}", flush=True)
                finally:
                    relay.stop()
    except (KeyboardInterrupt, tunnel_bench.Interrupted) as e:
        interrupted = True
        notes.append(f"run interrupted ({e or 'Ctrl-C'}); partial results")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM):  # clean up in peace
            signal.signal(sig, signal.SIG_IGN)
        _load.stop_processes(list(reversed(ctx.started)))
        shutil.rmtree(ctx.tmp, ignore_errors=True)

    print()
    for line in fmt_table(rows):
        print(line)
    print()
    for r in rows:
        if "skip" in r:
            continue
        extra = (
            f"{r['label']} N={r['n']:,}: RSS {r['rss0']:.1f} MiB before the logins, "
            f"{r['rss_idle']:.1f} after the idle period; {r['pongs']:,} Pongs, "
            f"{r['echoed']:,} bytes echoed; load generators {r['gen_rss']:.0f} MiB, "
            f"{r['gen_cpu']:.1f} % CPU at idle"
        )
        if r["errors"]:
            extra += f"; first error: {r['errors'][0][:200]}"
        if r["user_notes"]:
            extra += f"; user connection: {r['user_notes'][0][:200]}"
        notes.append(extra)
    notes.append(
        "RSS: VmRSS of the relay process once every client has logged in, after "
        f"{args.settle:g} s; KiB/client: (RSS - RSS before the logins) / clients "
        f"logged in; idle CPU: relay CPU over {args.idle_secs:g} s of heartbeats "
        "only (100 = one CPU)"
    )
    for n in notes:
        print(n)
    print(
        f"total time {time.monotonic() - t_start:.0f} s, "
        f"load average after: {tunnel_bench.loadavg()}"
    )
    print(other_load.report())
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
