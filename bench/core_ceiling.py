#!/usr/bin/env python3
"""
How much one labrelay-server process carries on one CPU.

    python3 bench/core_ceiling.py --frpc PATH [--parallel 1,2,4,8] [--secs 3]

One ``labrelay-server`` is pinned to one CPU (``--server-cpu``, default the
highest); everything else (the backend, the clients, the load generators,
wrk) is pinned to the other CPUs, so that only the relay competes for its
CPU.  The load grows (parallel bulk uploads, parallel connection loops,
wrk connections through the HTTP vhost) until the server's CPU time per
wall second nears 1.0: that rate is the ceiling of one process.  Each row
also gives the server's CPU per unit of work, and so the rate one fully
busy CPU would carry (``at 100 %``).

The clients are real frpc processes (``--frpc``), a Go program far
cheaper per byte than labrelay-client, so that the peers of the relay
saturate their CPU later than the relay does; without ``--frpc`` the
labrelay-client is used (then the client side may run out of CPU first,
which the ``clients CPU`` column shows).  See bench/README.rst, "One core's
ceiling".
"""

import argparse
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in bench/

import _load  # noqa: E402
import tunnel_bench  # noqa: E402

MiB = 1 << 20
TOKEN = tunnel_bench.TOKEN
SUBDOMAIN_HOST = "bench.test"


def cpu_idle_seconds(cpu):
    """Idle + iowait seconds of one CPU since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    raise SystemExit(f"cpu{cpu} not in /proc/stat")


def pinned(cpus):
    """A ``preexec_fn`` that pins the child to ``cpus``."""
    return lambda: os.sched_setaffinity(0, cpus)


# -- load generators (each in its own process, on the load CPUs) ---------------


def _bulk_worker(port, secs, payload_size, out):
    payload = os.urandom(payload_size)
    end = time.monotonic() + secs
    total = 0
    while time.monotonic() < end:
        got, _ = _load.bulk_upload(port, 32 * MiB, payload, timeout=60.0)
        total += got
    out.put(total)


def _conn_worker(port, secs, out):
    done, _, errors = _load.conn_rate(port, secs)
    out.put((done, errors))


def run_parallel(target, argsets, cpus):
    """Start one process per argument tuple, pinned to ``cpus``; return
    their results and the wall time from start to the last result."""
    out = multiprocessing.Queue()
    procs = []
    t0 = time.monotonic()
    for a in argsets:
        p = multiprocessing.Process(target=target, args=a + (out,))
        p.start()
        try:
            os.sched_setaffinity(p.pid, cpus)
        except OSError:
            pass
        procs.append(p)
    results = [out.get(timeout=120) for _ in procs]
    wall = time.monotonic() - t0
    for p in procs:
        p.join(timeout=10)
    return results, wall


# -- the relay and its clients -------------------------------------------------


class Setup:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.started = []
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [args.tree]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.python = args.python or sys.executable

    def spawn(self, argv, log, cpus):
        f = open(os.path.join(self.tmp, log), "wb")
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.args.tree,
                env=self.env,
                start_new_session=True,
                preexec_fn=pinned(cpus),
            )
        finally:
            f.close()
        self.started.append(p)
        return p

    def log(self, name):
        try:
            with open(os.path.join(self.tmp, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait(self, what, check, proc, log, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n    ".join(self.log(log).splitlines()[-8:])
        raise SystemExit(f"{what} not seen; log tail:\n    {tail}")

    def start(self, backend_port, server_cpus, load_cpus):
        args = self.args
        self.bind_port, self.vhost_port = _load.free_port(), _load.free_port()
        mux = "true" if args.tcp_mux else "false"
        frps = os.path.join(self.tmp, "frps.ini")
        with open(frps, "w") as f:
            f.write(
                f"[common]\nbind_addr = 127.0.0.1\nbind_port = {self.bind_port}\n"
                f"vhost_http_port = {self.vhost_port}\n"
                f"subdomain_host = {SUBDOMAIN_HOST}\n"
                f"token = {TOKEN}\ntcp_mux = {mux}\n"
                f"max_pool_count = 50\n"
            )
        self.server = self.spawn(
            [self.python, "-c", tunnel_bench.TWISTD_MAIN, "-n", "--pidfile="]
            + ["labrelay-server", "-c", frps],
            "server.log",
            server_cpus,
        )
        self.wait(
            "server listening",
            lambda: (
                _load.port_open(self.bind_port) and _load.port_open(self.vhost_port)
            ),
            self.server,
            "server.log",
        )
        self.clients, self.ports = [], []
        for i in range(args.clients):
            port = _load.free_port()
            self.ports.append(port)
            log = f"client{i}.log"
            if args.frpc:
                conf = os.path.join(self.tmp, f"frpc{i}.toml")
                with open(conf, "w") as f:
                    f.write(
                        f'serverAddr = "127.0.0.1"\nserverPort = {self.bind_port}\n'
                        f'auth.token = "{TOKEN}"\nloginFailExit = true\n'
                        f"transport.tcpMux = {mux}\n"
                        f"transport.tls.enable = {tunnel_bench.toml_bool(args.tls)}\n"
                        f"transport.poolCount = {args.pool_count}\n"
                        'log.to = "console"\nlog.disablePrintColor = true\n\n'
                        f'[[proxies]]\nname = "tcp{i}"\ntype = "tcp"\n'
                        f'localIP = "127.0.0.1"\nlocalPort = {backend_port}\n'
                        f"remotePort = {port}\n\n"
                        f'[[proxies]]\nname = "web{i}"\ntype = "http"\n'
                        f'localIP = "127.0.0.1"\n'
                        f"localPort = {self.http_port}\n"
                        f'subdomain = "web{i}"\n'
                    )
                argv = [args.frpc, "-c", conf]
            else:
                conf = os.path.join(self.tmp, f"frpc{i}.ini")
                with open(conf, "w") as f:
                    f.write(
                        f"[common]\nserver_addr = 127.0.0.1\n"
                        f"server_port = {self.bind_port}\ntoken = {TOKEN}\n"
                        f"tcp_mux = {mux}\n"
                        f"tls_enable = {tunnel_bench.toml_bool(args.tls)}\n"
                        f"pool_count = {args.pool_count}\n\n"
                        f"[tcp{i}]\ntype = tcp\nlocal_ip = 127.0.0.1\n"
                        f"local_port = {backend_port}\nremote_port = {port}\n\n"
                        f"[web{i}]\ntype = http\nlocal_ip = 127.0.0.1\n"
                        f"local_port = {self.http_port}\nsubdomain = web{i}\n"
                    )
                argv = [self.python, "-c", tunnel_bench.TWISTD_MAIN, "-n"]
                argv += ["--pidfile=", "labrelay-client", "-c", conf]
            client = self.spawn(argv, log, load_cpus)
            self.clients.append(client)
        for i, client in enumerate(self.clients):
            self.wait(
                f"client {i}: two 'start proxy success'",
                lambda i=i: (
                    self.log(f"client{i}.log").count("start proxy success") >= 2
                ),
                client,
                f"client{i}.log",
            )


# -- measuring -----------------------------------------------------------------


def measure(setup, label, parallel, run):
    """Run ``run()`` (-> (units, unit name, note)) and read the CPU time of
    the server, of the clients, of everything else, and the idle time of
    the server's CPU in the meantime."""
    i0 = cpu_idle_seconds(setup.server_cpu)
    s0 = _load.cpu_seconds([setup.server.pid])
    c0 = _load.cpu_seconds([c.pid for c in setup.clients])
    b0 = _load.busy_seconds()
    t0 = time.monotonic()
    units, unit, extra = run()
    wall = time.monotonic() - t0
    server = _load.cpu_seconds([setup.server.pid]) - s0
    clients = _load.cpu_seconds([c.pid for c in setup.clients]) - c0
    busy = _load.busy_seconds() - b0
    idle = cpu_idle_seconds(setup.server_cpu) - i0
    rate = units / wall
    return {
        "label": label,
        "parallel": parallel,
        "rate": rate,
        "unit": unit,
        "server": server / wall,
        "clients": clients / wall,
        "rest": max(0.0, busy - server - clients) / wall,
        "idle": idle / wall,
        "per_unit": server / units if units else float("nan"),
        "ceiling": units / server if server else float("nan"),
        "extra": extra,
    }


def bulk(setup, parallel, load_cpus):
    ports = [setup.ports[i % len(setup.ports)] for i in range(parallel)]
    results, wall = run_parallel(
        _bulk_worker,
        [(p, setup.args.secs, _load.CHUNK) for p in ports],
        load_cpus,
    )
    return sum(results) / MiB, "MiB", ""


def conns(setup, parallel, load_cpus):
    ports = [setup.ports[i % len(setup.ports)] for i in range(parallel)]
    results, _ = run_parallel(
        _conn_worker, [(p, setup.args.secs) for p in ports], load_cpus
    )
    errors = sum(e for _, e in results)
    return sum(d for d, _ in results), "conn", f"{errors} err" if errors else ""


def vhost(setup, conns_n, load_cpus):
    wrk = shutil.which("wrk")
    out = subprocess.run(
        [wrk, "-t1", f"-c{conns_n}", f"-d{setup.args.secs:g}s", "--timeout", "10s"]
        + ["-H", f"Host: web0.{SUBDOMAIN_HOST}"]
        + [f"http://127.0.0.1:{setup.vhost_port}/small"],
        capture_output=True,
        text=True,
        timeout=setup.args.secs + 60,
        preexec_fn=pinned(load_cpus),
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    extra = f"{errs.group(1)} non-2xx" if errs else ""
    # wrk's own duration is --secs; measure() divides by the wall time,
    # which includes wrk's start: close enough at a few seconds
    return int(m.group(1)) if m else 0, "req", extra


def fmt(rows):
    head = [
        "load",
        "parallel",
        "rate",
        "server CPU",
        "clients CPU",
        "other CPU",
        "server's CPU idle",
        "server CPU per unit",
        "at 100 % of one CPU",
        "note",
    ]
    table = [head]
    for r in rows:
        per = r["per_unit"]
        per_s = f"{per * 1e6:.0f} us/{r['unit']}"
        if r["unit"] == "MiB":
            per_s = f"{per * 1e9 / MiB:.2f} s/GB"
        table.append(
            [
                r["label"],
                str(r["parallel"]),
                f"{r['rate']:.0f} {r['unit']}/s",
                f"{r['server'] * 100:.0f} %",
                f"{r['clients'] * 100:.0f} %",
                f"{r['rest'] * 100:.0f} %",
                f"{r['idle'] * 100:.0f} %",
                per_s,
                f"{r['ceiling']:.0f} {r['unit']}/s",
                r["extra"],
            ]
        )
    return tunnel_bench.align(table, left_columns=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--secs", type=float, default=3.0, help="seconds per cell")
    ap.add_argument(
        "--parallel",
        default="1,2,4,8",
        help="parallel bulk uploads / connection loops, comma-separated",
    )
    ap.add_argument(
        "--wrk-conns", default="8,64", help="wrk connections through the vhost"
    )
    ap.add_argument(
        "--clients", type=int, default=4, help="client processes (default 4)"
    )
    ap.add_argument("--pool-count", type=int, default=5, help="each client's pool")
    ap.add_argument("--no-mux", dest="tcp_mux", action="store_false")
    ap.add_argument("--no-tls", dest="tls", action="store_false")
    ap.add_argument(
        "--server-cpu",
        type=int,
        default=None,
        help="the CPU of labrelay-server (default: the highest one)",
    )
    ap.add_argument(
        "--frpc",
        metavar="PATH",
        default=None,
        help="frpc binary for the clients (default: labrelay-client)",
    )
    ap.add_argument(
        "--tree",
        default=REPO,
        help="labrelay source tree to run (default: this repository's working tree)",
    )
    tunnel_bench.add_python_option(ap)
    args = ap.parse_args()
    args.tree = os.path.abspath(args.tree)
    args.python = tunnel_bench.relay_python(args)
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        raise SystemExit("needs 2 CPUs or more: one for the relay, one for the rest")
    server_cpu = max(cpus) if args.server_cpu is None else args.server_cpu
    server_cpus, load_cpus = {server_cpu}, cpus - {server_cpu}
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    other = _load.OtherLoad()
    os.sched_setaffinity(0, load_cpus)

    tmp = tempfile.mkdtemp(prefix="labrelay-ceiling-")
    setup = Setup(args, tmp)
    setup.server_cpu = server_cpu
    rows = []
    try:
        for line in tunnel_bench.versions(args.tree):
            if not line.startswith("others:"):
                print(line, flush=True)
        print(tunnel_bench.relay_python_line(args.python), flush=True)
        print(
            f"labrelay-server on CPU {server_cpu}; backend, "
            f"{args.clients} x {'frpc ' + args.frpc if args.frpc else 'labrelay-client'}"
            f", load generators and wrk on CPU(s) "
            f"{','.join(map(str, sorted(load_cpus)))}; tcp_mux "
            f"{'on' if args.tcp_mux else 'off'}, TLS {'on' if args.tls else 'off'}",
            flush=True,
        )
        backend = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_load.py"), "backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=pinned(load_cpus),
        )
        http = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_load.py"), "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=pinned(load_cpus),
        )
        setup.started += [backend, http]
        backend_port = int(backend.stdout.readline().split()[1])
        setup.http_port = int(http.stdout.readline().split()[1])
        setup.start(backend_port, server_cpus, load_cpus)
        # unmeasured warm-up of every path
        bulk(setup, 1, load_cpus)
        conns(setup, 2, load_cpus)
        vhost(setup, 8, load_cpus)
        for n in [int(x) for x in args.parallel.split(",")]:
            rows.append(
                measure(setup, "bulk upload", n, lambda n=n: bulk(setup, n, load_cpus))
            )
            print(f"  bulk x{n} done", flush=True)
        for n in [int(x) for x in args.parallel.split(",")]:
            rows.append(
                measure(
                    setup, "new connections", n, lambda n=n: conns(setup, n, load_cpus)
                )
            )
            print(f"  conns x{n} done", flush=True)
        for n in [int(x) for x in args.wrk_conns.split(",")]:
            rows.append(
                measure(
                    setup, "vhost small GET", n, lambda n=n: vhost(setup, n, load_cpus)
                )
            )
            print(f"  vhost x{n} done", flush=True)
    finally:
        _load.stop_processes(list(reversed(setup.started)))
        shutil.rmtree(tmp, ignore_errors=True)
        os.sched_setaffinity(0, cpus)  # for the report's CPU count
    print()
    for line in fmt(rows):
        print(line)
    print()
    print(
        "server CPU: CPU-s of labrelay-server per wall second (100 % = one CPU "
        "busy); clients CPU: the client processes; other CPU: the rest of "
        "the machine's busy time (load generators, backends, wrk, kernel, "
        "other work on the machine); server's CPU idle: idle time of the "
        "server's CPU (near 0: the server had its CPU to itself and used it "
        "all, or shared it); at 100 % of one CPU = units / server CPU-s"
    )
    print(other.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
