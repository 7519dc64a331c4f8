#!/usr/bin/env python3
"""
labrelay's HTTP vhost against direct HTTP, with wrk, in one run.

    python3 bench/vhost_bench.py [--quick] [--frps PATH --frpc PATH]

An asyncio HTTP/1.1 keep-alive backend (``bench/_load.py http-backend``)
answers GET /small (100 bytes) and GET /big (1 MiB).  wrk loads it directly
and through labrelay's vhost (``type = http``, ``subdomain``) with tcp_mux
on, off, and on without TLS: requests/s, p50/p99 latency and the relay's
CPU per request for each response size and connection count.  With frp's
binaries (--frps/--frpc, or on $PATH), real frps/frpc rows with the same
proxy (vhostHTTPPort, ``type = "http"``) sit next to labrelay's and a second
table gives the labrelay / frp ratios.  With ``--before DIR`` each labrelay
row is preceded by a ``before`` row running the labrelay source tree DIR
(e.g. ``git archive main | tar -x -C DIR``), and a third table gives the
labrelay / before ratios of the same run.  See bench/README.rst.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in bench/

import _load  # noqa: E402
import tunnel_bench  # noqa: E402   (Path, Labrelay, Frp, versions, ...)

TOKEN = tunnel_bench.TOKEN
SUBDOMAIN_HOST = "bench.test"
HOST = f"web.{SUBDOMAIN_HOST}"
SIZES = (("small", "/small", _load.HTTP_SMALL), ("1 MiB", "/big", _load.HTTP_BIG))


# -- the paths -------------------------------------------------------------------


class Direct(tunnel_bench.Path):
    def __init__(self, ctx, label="direct"):
        super().__init__(ctx)
        self.label = label

    def start(self):
        self.port = self.ctx.backend_port


class VhostLabrelay(tunnel_bench.Labrelay):
    """labrelay-server with vhost_http_port, labrelay-client with one
    ``type = http`` proxy (subdomain ``web``) to the backend; *tree*: the
    labrelay source tree to run (default: the run's)."""

    def __init__(self, ctx, label, tcp_mux=True, tls=True, pool_count=None, tree=None):
        super().__init__(ctx, label, tcp_mux=tcp_mux, tls=tls)
        self.pool_count = pool_count
        self.run_in = {}
        if tree is not None:
            env = dict(ctx.env)
            env["PYTHONPATH"] = os.pathsep.join(
                [tree]
                + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            )
            self.run_in = {"cwd": tree, "env": env}

    def start(self):
        tag = re.sub(r"[^A-Za-z0-9]+", "_", self.label).strip("_")
        bind_port, self.port = _load.free_port(), _load.free_port()
        mux = "true" if self.tcp_mux else "false"
        frps = os.path.join(self.ctx.tmp, f"{tag}-frps.ini")
        frpc = os.path.join(self.ctx.tmp, f"{tag}-frpc.ini")
        with open(frps, "w") as f:
            f.write(
                f"[common]\nbind_addr = 127.0.0.1\n"
                f"bind_port = {bind_port}\n"
                f"vhost_http_port = {self.port}\n"
                f"subdomain_host = {SUBDOMAIN_HOST}\n"
                f"token = {TOKEN}\ntcp_mux = {mux}\n"
            )
        with open(frpc, "w") as f:
            f.write(
                f"[common]\nserver_addr = 127.0.0.1\n"
                f"server_port = {bind_port}\ntoken = {TOKEN}\n"
                f"tcp_mux = {mux}\n"
                f"tls_enable = {'true' if self.tls else 'false'}\n"
            )
            if self.pool_count is not None:
                f.write(f"pool_count = {self.pool_count}\n")
            f.write(
                f"\n[web]\ntype = http\nlocal_ip = 127.0.0.1\n"
                f"local_port = {self.ctx.backend_port}\n"
                f"subdomain = web\n"
            )
        slog, clog = f"{tag}-server.log", f"{tag}-client.log"
        server = self.spawn(
            self.twistd() + ["-n", "--pidfile=", "labrelay-server", "-c", frps],
            slog,
            **self.run_in,
        )
        self.wait_for(
            "server listening",
            lambda: _load.port_open(bind_port) and _load.port_open(self.port),
            server,
            slog,
        )
        client = self.spawn(
            self.twistd() + ["-n", "--pidfile=", "labrelay-client", "-c", frpc],
            clog,
            **self.run_in,
        )
        self.wait_for(
            "'start proxy success'",
            lambda: "start proxy success" in self.log_text(clog),
            client,
            clog,
        )
        self.cpu_roots = [server.pid, client.pid]


class VhostFrp(tunnel_bench.Frp):
    """Real frps with vhostHTTPPort and subDomainHost, frpc with one
    ``type = "http"`` proxy (subdomain ``web``) to the backend."""

    def __init__(self, ctx, label, tcp_mux=True, tls=True, pool_count=None):
        super().__init__(ctx, label, tcp_mux=tcp_mux, tls=tls)
        self.pool_count = pool_count

    def server_toml(self):
        self.port = _load.free_port()
        self.server_ports = (self.port,)
        return (
            f"vhostHTTPPort = {self.port}\n"
            f"subDomainHost = {json.dumps(SUBDOMAIN_HOST)}\n"
        )

    def client_toml(self):
        if self.pool_count is None:
            return ""
        return f"transport.poolCount = {self.pool_count}\n"

    def proxies_toml(self):
        return (
            f'[[proxies]]\nname = "web"\ntype = "http"\n'
            f'localIP = "127.0.0.1"\n'
            f"localPort = {self.ctx.backend_port}\n"
            f'subdomain = "web"\n'
        )


# -- wrk -------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise _load.BenchError(f"cannot read wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    """requests/s, latency percentiles (ms), request count and errors
    from wrk --latency output."""
    r = {"errors": 0, "non2xx": 0, "socket": ""}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise _load.BenchError(
            "no 'Requests/sec' in wrk output: "
            + " | ".join(out.strip().splitlines()[-3:])
        )
    r["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[f"p{pct}"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    if m:
        c, rd, w, t = (int(x) for x in m.groups())
        r["errors"] += c + rd + w + t
        r["socket"] = f"connect {c}, read {rd}, write {w}, timeout {t}"
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
        r["errors"] += r["non2xx"]
    return r


def run_wrk(ctx, port, url_path, conns, secs, threads, timeout_s):
    argv = [
        ctx.wrk,
        f"-t{min(threads, conns)}",
        f"-c{conns}",
        f"-d{secs:g}s",
        "--latency",
        f"--timeout={timeout_s:g}s",
        "-H",
        f"Host: {HOST}",
        f"http://127.0.0.1:{port}{url_path}",
    ]
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ctx.started.append(p)
    try:
        out, _ = p.communicate(timeout=secs + timeout_s + 15)
    except subprocess.TimeoutExpired:
        raise _load.BenchError(f"wrk did not end within {secs + timeout_s + 15:g} s")
    finally:
        if p.poll() is None:  # timed out, or interrupted
            _load.stop_processes([p])
        ctx.started.remove(p)
    return parse_wrk(out.decode("utf-8", "replace"))


def backend_stats(ctx):
    """(connections accepted, requests answered) by the backend, the
    stats request itself not counted."""
    status, body = _load.http_get(ctx.backend_port, "/stats", HOST)
    conns, reqs = (int(x) for x in body.split())
    return conns - 1, reqs - 1


def cpu_each(roots):
    return [_load.cpu_seconds([pid]) for pid in roots]


# -- measuring -------------------------------------------------------------------


def check_path(path):
    """One GET of each resource on a fresh connection: the route works and
    the bodies arrive whole."""
    for _, url_path, size in SIZES:
        status, body = _load.http_get(path.port, url_path, HOST, timeout=15)
        if status != 200 or len(body) != size:
            raise _load.BenchError(
                f"GET {url_path}: status {status}, {len(body)} bytes "
                f"(expected 200, {size})"
            )


def measure_cell(ctx, path, args, url_path, conns):
    roots = path.cpu_roots
    cpu0 = cpu_each(roots)
    be0 = backend_stats(ctx)
    t0 = time.monotonic()
    r = run_wrk(ctx, path.port, url_path, conns, args.secs, args.threads, args.timeout)
    wall = time.monotonic() - t0
    be1 = backend_stats(ctx)
    cpu1 = cpu_each(roots)
    r["cpu_pct"] = [100.0 * (b - a) / wall for a, b in zip(cpu0, cpu1)]
    served = be1[1] - be0[1]
    r["be_conns_per_req"] = (be1[0] - be0[0]) / served if served else None
    if roots and r["requests"]:
        r["cpu_us_req"] = 1e6 * sum(b - a for a, b in zip(cpu0, cpu1)) / r["requests"]
    return r


# -- output ----------------------------------------------------------------------


def fmt_ms(v):
    if v != v:  # nan
        return "?"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_delta(v, ref):
    if v != v or ref != ref:
        return "?"
    d = v - ref
    return ("+" if d >= 0 else "-") + fmt_ms(abs(d))


def fmt_table(rows, ref):
    head = [
        "path",
        "resp",
        "conns",
        "req/s",
        "x direct",
        "p50 ms",
        "+p50",
        "p99 ms",
        "+p99",
        "errors",
        "relay CPU % srv/cli",
        "relay CPU us/req",
        "backend conn/req",
    ]
    table = [head]
    for row in rows:
        if "skip" in row:
            table.append([row["label"], f"skipped: {row['skip']}"])
            continue
        if not row["cells"]:
            table.append([row["label"], "not measured (interrupted)"])
            continue
        for size, conns, r in row["cells"]:
            if "fail" in r:
                table.append([row["label"], size, str(conns), f"failed: {r['fail']}"])
                continue
            d = ref.get((size, conns))
            is_ref = row is ref["row"]
            cells = [
                row["label"],
                size,
                str(conns),
                f"{r['rps']:.0f}",
                f"{r['rps'] / d['rps']:.3f}" if d else "?",
                fmt_ms(r["p50"]),
                "-" if is_ref or not d else fmt_delta(r["p50"], d["p50"]),
                fmt_ms(r["p99"]),
                "-" if is_ref or not d else fmt_delta(r["p99"], d["p99"]),
                str(r["errors"]),
                "/".join(f"{c:.0f}" for c in r["cpu_pct"]) or "-",
                f"{r['cpu_us_req']:.0f}" if "cpu_us_req" in r else "-",
                f"{r['be_conns_per_req']:.3f}"
                if r["be_conns_per_req"] is not None
                else "?",
            ]
            table.append(cells)
    return tunnel_bench.align(table, left_columns=2)


def fmt_ratios(rows):
    """The 'labrelay / frp' table: per pair of matching rows, per response
    size and connection count."""
    table = [["labrelay / frp", "resp", "conns", "req/s", "p50", "p99", "CPU us/req"]]
    for suffix, lab, frp in tunnel_bench.pairs(rows):
        theirs = {
            (size, conns): r for size, conns, r in frp["cells"] if "fail" not in r
        }
        for size, conns, r in lab["cells"]:
            f = theirs.get((size, conns))
            if "fail" in r or f is None:
                continue
            table.append(
                [
                    suffix,
                    size,
                    str(conns),
                    tunnel_bench.ratio(r["rps"], f["rps"]),
                    tunnel_bench.ratio(r["p50"], f["p50"]),
                    tunnel_bench.ratio(r["p99"], f["p99"]),
                    tunnel_bench.ratio(r.get("cpu_us_req"), f.get("cpu_us_req")),
                ]
            )
    if len(table) == 1:
        return []
    return tunnel_bench.align(table, left_columns=2)


def fmt_before_ratios(rows):
    """The 'labrelay / before' table (``--before``): per 'labrelay X' row
    and its 'before X' row, per response size and connection count."""
    measured = {r["label"]: r for r in rows if "skip" not in r}
    table = [["labrelay / before", "resp", "conns", "req/s", "p99", "CPU us/req"]]
    for row in rows:
        label = row["label"]
        if not label.startswith("labrelay ") or label not in measured:
            continue
        suffix = label[len("labrelay ") :]
        before = measured.get("before " + suffix)
        if before is None:
            continue
        theirs = {
            (size, conns): r for size, conns, r in before["cells"] if "fail" not in r
        }
        for size, conns, r in row["cells"]:
            b = theirs.get((size, conns))
            if "fail" in r or b is None:
                continue
            table.append(
                [
                    suffix,
                    size,
                    str(conns),
                    tunnel_bench.ratio(r["rps"], b["rps"]),
                    tunnel_bench.ratio(r["p99"], b["p99"]),
                    tunnel_bench.ratio(r.get("cpu_us_req"), b.get("cpu_us_req")),
                ]
            )
    if len(table) == 1:
        return []
    return tunnel_bench.align(table, left_columns=2)


# -- main ------------------------------------------------------------------------

Interrupted = tunnel_bench.Interrupted


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="shorter wrk runs, for a run under a minute",
    )
    ap.add_argument(
        "--secs",
        type=float,
        default=None,
        help="seconds per wrk run (default 6, --quick 2)",
    )
    ap.add_argument(
        "--conns", default="8,64", help="wrk connection counts, comma-separated"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: leaves the other CPUs to "
        "the relay and the backend)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="wrk request timeout, s (labrelay's user_conn_timeout is 10 s)",
    )
    ap.add_argument(
        "--no-tls-row", action="store_true", help="leave out the tls_enable = false row"
    )
    ap.add_argument(
        "--pool-count",
        type=int,
        default=None,
        help="frpc pool_count of the labrelay and frp rows "
        "(default: unset, i.e. each one's default)",
    )
    ap.add_argument(
        "--tree",
        default=REPO,
        help="labrelay source tree to run (default: this repository's working tree)",
    )
    ap.add_argument(
        "--before",
        default=None,
        metavar="DIR",
        help="also run the labrelay source tree DIR ('before' rows, next to "
        "each labrelay row, and a labrelay / before table)",
    )
    tunnel_bench.add_python_option(ap)
    tunnel_bench.add_frp_options(ap)
    args = ap.parse_args()
    args.tree = os.path.abspath(args.tree)
    args.python = tunnel_bench.relay_python(args)
    if args.before:
        args.before = os.path.abspath(args.before)
    if args.secs is None:
        args.secs = 2.0 if args.quick else 6.0
    args.conn_list = [int(c) for c in args.conns.split(",") if c.strip()]
    warm = 1.0
    frp, frp_note = tunnel_bench.find_frp(args)
    per_path = len(SIZES) * (warm + len(args.conn_list) * (args.secs + 0.3))
    per_pair = 1 + (1 if frp else 0) + (1 if args.before else 0)
    n_paths = 1 + per_pair * (2 if args.no_tls_row else 3)
    budget = max(
        55.0 if args.quick else 170.0,  # whole run, soft
        n_paths * (per_path + 4.0) + 10.0,
    )
    hard = budget + 40.0  # whole run, SIGALRM

    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    ctx = tunnel_bench.start_run(args.tree, hard, "labrelay-vhost-bench-")
    ctx.wrk = wrk
    ctx.frp = frp
    ctx.python = args.python
    t_start = time.monotonic()
    other_load = _load.OtherLoad()
    rows, notes = [], []
    interrupted = False
    try:
        import h11

        for line in tunnel_bench.versions(args.tree):
            if line.startswith("others:"):
                continue
            print(line, flush=True)
        print(tunnel_bench.relay_python_line(args.python), flush=True)
        print(tunnel_bench.frp_version(frp) if frp else frp_note, flush=True)
        if args.before:
            print(f"before rows: labrelay from {args.before}", flush=True)
        wrk_v = subprocess.run(
            [wrk, "-v"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
        print(
            f"h11 {h11.__version__}; load: "
            f"{(wrk_v or ['wrk ?'])[0].split(' Copyright')[0]}, "
            f"{args.threads} thread(s), --timeout {args.timeout:g}s",
            flush=True,
        )
        print(
            f"each cell: wrk for {args.secs:g} s (after {warm:g} s of "
            f"unmeasured warm-up per path and size), "
            f"connections {', '.join(map(str, args.conn_list))}",
            flush=True,
        )
        backend = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "_load.py"),
                "http-backend",
                "--lifetime",
                str(hard + 60),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            cwd=REPO,
        )
        ctx.started.append(backend)
        line = backend.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"backend did not start: {line!r}")
        ctx.backend_port = int(line.split()[1])

        paths = [Direct(ctx)]

        def pair(suffix, **kw):
            # frp's row right after labrelay's: same drift, easy to compare
            if args.before:
                paths.append(
                    VhostLabrelay(
                        ctx,
                        "before " + suffix,
                        pool_count=args.pool_count,
                        tree=args.before,
                        **kw,
                    )
                )
            paths.append(
                VhostLabrelay(
                    ctx, "labrelay " + suffix, pool_count=args.pool_count, **kw
                )
            )
            if frp:
                paths.append(
                    VhostFrp(ctx, "frp " + suffix, pool_count=args.pool_count, **kw)
                )

        pair("mux")
        pair("no-mux", tcp_mux=False)
        if not args.no_tls_row:
            pair("mux, no tls", tls=False)
        for path in paths:
            left = budget - (time.monotonic() - t_start)
            if left < per_path * 0.8:
                rows.append({"label": path.label, "skip": "time budget used up"})
                continue
            print(f"  {path.label} ...", end="", flush=True)
            t0 = time.monotonic()
            row = {"label": path.label, "cells": []}
            rows.append(row)  # partial cells show if interrupted
            try:
                path.start()
                check_path(path)
                for size, url_path, _ in SIZES:
                    run_wrk(
                        ctx, path.port, url_path, 8, warm, args.threads, args.timeout
                    )
                    for conns in args.conn_list:
                        try:
                            r = measure_cell(ctx, path, args, url_path, conns)
                        except (OSError, _load.BenchError) as e:
                            r = {"fail": str(e).splitlines()[0][:120]}
                        row["cells"].append((size, conns, r))
                print(f" {time.monotonic() - t0:.1f} s", flush=True)
            except (RuntimeError, OSError, _load.BenchError) as e:
                if not row["cells"]:
                    row["skip"] = f"failed: {str(e).splitlines()[0]}"
                else:
                    notes.append(f"{path.label} failed: {e}")
                print(f" failed: {e}", flush=True)
                for line in path.error_lines():
                    print(f"      {line[:300]}", flush=True)
            finally:
                if row["cells"] and path.logs:
                    errs = path.error_lines()
                    if errs:
                        notes.append(
                            f"{path.label} logged: " + "; ".join(e[:200] for e in errs)
                        )
                path.stop()
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        notes.append(f"run interrupted ({str(e) or 'Ctrl-C'}); partial results")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM):  # clean up in peace
            signal.signal(sig, signal.SIG_IGN)
        _load.stop_processes(list(reversed(ctx.started)))
        shutil.rmtree(ctx.tmp, ignore_errors=True)

    direct = next((r for r in rows if r["label"] == "direct" and "skip" not in r), None)
    print()
    if direct is None:
        print("no direct measurement; nothing to compare")
        for n in notes:
            print(n)
        return 130 if interrupted else 1
    ref = {"row": direct}
    for size, conns, r in direct["cells"]:
        if "fail" not in r:
            ref[size, conns] = r
    for line in fmt_table(rows, ref):
        print(line)
    print()
    ratios = fmt_ratios(rows)
    for line in ratios:
        print(line)
    if ratios:
        print()
    ratios = fmt_before_ratios(rows)
    for line in ratios:
        print(line)
    if ratios:
        print()
    for row in rows:
        for size, conns, r in row.get("cells", ()):
            if r.get("errors"):
                notes.append(
                    f"{row['label']} {size} c={conns}: "
                    f"{r['non2xx']} non-2xx, socket errors "
                    f"{r['socket'] or '-'}"
                )
    notes.append(
        "latency: wrk's closed loop (each connection sends its next "
        "request when the previous answer is in); timed-out "
        "requests are counted in errors, not in the percentiles"
    )
    notes.append(
        "ratios and +deltas are against the 'direct' cell of the "
        "same size and connection count; labrelay rows keep "
        "tls_enable = true (the frpc default) unless 'no tls'"
    )
    if frp:
        notes.append(
            "frp rows: frps/frpc from --frps/--frpc, TOML config, "
            "frp's defaults (transport.tls.enable = true, tcpMux = "
            "true) unless 'no tls' / 'no-mux'"
        )
    else:
        notes.append(frp_note)
    if ratios:
        notes.append(
            "labrelay / frp: above 1 is better for labrelay in "
            "req/s, below 1 is better in p50, p99 and CPU us/req"
        )
    notes.append(
        "backend conn/req: new backend connections per request "
        "served; labrelay keeps up to 64 idle work connections per "
        "proxy for reuse (5 for 60 s, the others for 1 s), any other "
        "request costs a new work "
        "connection (a yamux stream with mux, a TCP connection "
        "with TLS handshake without)"
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
