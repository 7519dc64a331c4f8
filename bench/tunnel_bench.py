#!/usr/bin/env python3
"""
labrelay against a direct connection and other relays, in one run.

    python3 bench/tunnel_bench.py [--quick] [--frps PATH --frpc PATH]

Every path carries the same client traffic to the same backend process:
bulk upload throughput, 64-byte ping-pong RTT, sequential new-connection
rate, the CPU time the relay processes spent per GB of bulk data and their
idle resident memory.  With frp's binaries (--frps/--frpc, or on $PATH),
real frps/frpc rows sit next to labrelay's and a second table gives the
labrelay / frp ratios.  See bench/README.rst for what each column means.
"""

import argparse
import getpass
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in bench/

import _load  # noqa: E402

MiB = 1 << 20
TOKEN = "bench-token"


#: ``python -c`` program that runs twistd (no ``twistd`` script needed)
TWISTD_MAIN = (
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
)


class Skip(Exception):
    """The path cannot be measured here; the message says why."""


# -- the paths -------------------------------------------------------------------


class Path:
    """One way from the measuring client to the backend."""

    label = "?"

    def __init__(self, ctx):
        self.ctx = ctx
        self.procs = []
        self.cpu_roots = []
        self.port = None
        self.logs = []

    def error_lines(self):
        """The last error-looking lines of this path's logs."""
        out = []
        for name in self.logs:
            lines = self.log_text(name).splitlines()
            hits = [
                i
                for i, l in enumerate(lines)
                if "Error" in l
                or "Traceback" in l
                or "#error" in l
                or "#critical" in l
                or " [E] " in l
            ]
            if hits:
                out.append(
                    f"{name}: "
                    + " | ".join(l.strip() for l in lines[hits[-1] : hits[-1] + 1])
                )
        return out

    def spawn(self, argv, log_name, **kw):
        self.logs.append(log_name)
        log = open(os.path.join(self.ctx.tmp, log_name), "wb")
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=kw.pop("cwd", self.ctx.tree),
                env=kw.pop("env", self.ctx.env),
                start_new_session=True,
                **kw,
            )
        finally:
            log.close()
        self.procs.append(p)
        self.ctx.started.append(p)
        return p

    def log_text(self, log_name):
        try:
            with open(os.path.join(self.ctx.tmp, log_name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for(self, what, check, proc, log_name, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n    ".join(self.log_text(log_name).splitlines()[-8:])
        raise RuntimeError(
            f"{self.label}: {what} not seen "
            f"(exit code {proc.poll()}); log tail:\n    {tail}"
        )

    def start(self):
        raise NotImplementedError

    def stop(self):
        _load.stop_processes(list(reversed(self.procs)))
        self.procs = []


class Direct(Path):
    def __init__(self, ctx, label="direct"):
        super().__init__(ctx)
        self.label = label

    def start(self):
        self.port = self.ctx.backend_port


class Labrelay(Path):
    def __init__(self, ctx, label, tcp_mux=True, crypt=False, tls=True):
        super().__init__(ctx)
        self.label = label
        self.tcp_mux, self.crypt, self.tls = tcp_mux, crypt, tls

    def twistd(self):
        """The command that starts twistd: under ``--python PATH`` when it
        was given, else this interpreter's twistd."""
        python = getattr(self.ctx, "python", None)
        if python:
            return [python, "-c", TWISTD_MAIN]
        exe = os.path.join(os.path.dirname(sys.executable), "twistd")
        if os.access(exe, os.X_OK):
            return [exe]
        found = shutil.which("twistd")
        if found:
            return [found]
        return [sys.executable, "-c", TWISTD_MAIN]

    def start(self):
        tag = self.label.replace(" ", "_").replace(",", "").replace("+", "")
        bind_port, self.port = _load.free_port(), _load.free_port()
        mux = "true" if self.tcp_mux else "false"
        frps = os.path.join(self.ctx.tmp, f"{tag}-frps.ini")
        frpc = os.path.join(self.ctx.tmp, f"{tag}-frpc.ini")
        with open(frps, "w") as f:
            f.write(
                f"[common]\nbind_addr = 127.0.0.1\n"
                f"bind_port = {bind_port}\ntoken = {TOKEN}\n"
                f"tcp_mux = {mux}\n"
            )
        with open(frpc, "w") as f:
            f.write(
                f"[common]\nserver_addr = 127.0.0.1\n"
                f"server_port = {bind_port}\ntoken = {TOKEN}\n"
                f"tcp_mux = {mux}\n"
                f"tls_enable = {'true' if self.tls else 'false'}\n\n"
                f"[bench]\ntype = tcp\nlocal_ip = 127.0.0.1\n"
                f"local_port = {self.ctx.backend_port}\n"
                f"remote_port = {self.port}\n"
            )
            if self.crypt:
                f.write("use_encryption = true\nuse_compression = true\n")
        slog, clog = f"{tag}-server.log", f"{tag}-client.log"
        server = self.spawn(
            self.twistd() + ["-n", "--pidfile=", "labrelay-server", "-c", frps], slog
        )
        self.wait_for(
            "server listening", lambda: _load.port_open(bind_port), server, slog
        )
        client = self.spawn(
            self.twistd() + ["-n", "--pidfile=", "labrelay-client", "-c", frpc], clog
        )
        self.wait_for(
            "'start proxy success'",
            lambda: "start proxy success" in self.log_text(clog),
            client,
            clog,
        )
        self.cpu_roots = [server.pid, client.pid]


class Frp(Path):
    """Real frps and frpc (binaries given with --frps/--frpc), configured in
    frp's own TOML format; everything else left at frp's defaults."""

    def __init__(self, ctx, label, tcp_mux=True, tls=True):
        super().__init__(ctx)
        self.label = label
        self.tcp_mux, self.tls = tcp_mux, tls

    #: ports of frps besides bind_port to wait for (see server_toml)
    server_ports = ()

    def server_toml(self):
        """Extra top-level frps.toml lines (the vhost bench adds its own)."""
        return ""

    def client_toml(self):
        """Extra top-level frpc.toml lines."""
        return ""

    def proxies_toml(self):
        """The [[proxies]] of frpc.toml."""
        self.port = _load.free_port()
        return (
            f'[[proxies]]\nname = "bench"\ntype = "tcp"\n'
            f'localIP = "127.0.0.1"\n'
            f"localPort = {self.ctx.backend_port}\n"
            f"remotePort = {self.port}\n"
        )

    def start(self):
        if not self.ctx.frp:
            raise Skip("no frps/frpc binaries")
        frps_exe, frpc_exe = self.ctx.frp
        tag = "".join(c if c.isalnum() else "_" for c in self.label)
        bind_port = _load.free_port()
        common = (
            f"auth.token = {json.dumps(TOKEN)}\n"
            f"transport.tcpMux = {toml_bool(self.tcp_mux)}\n"
            'log.to = "console"\nlog.level = "info"\n'
            "log.disablePrintColor = true\n"
        )
        frps = os.path.join(self.ctx.tmp, f"{tag}-frps.toml")
        frpc = os.path.join(self.ctx.tmp, f"{tag}-frpc.toml")
        with open(frps, "w") as f:
            f.write(
                f'bindAddr = "127.0.0.1"\nbindPort = {bind_port}\n'
                + common
                + self.server_toml()
            )
        with open(frpc, "w") as f:
            f.write(
                f'serverAddr = "127.0.0.1"\nserverPort = {bind_port}\n'
                "loginFailExit = true\n"
                + common
                + f"transport.tls.enable = {toml_bool(self.tls)}\n"
                + self.client_toml()
                + "\n"
                + self.proxies_toml()
            )
        slog, clog = f"{tag}-frps.log", f"{tag}-frpc.log"
        server = self.spawn([frps_exe, "-c", frps], slog, cwd=self.ctx.tmp)
        self.wait_for(
            "frps listening",
            lambda: all(
                _load.port_open(p) for p in (bind_port,) + tuple(self.server_ports)
            ),
            server,
            slog,
        )
        client = self.spawn([frpc_exe, "-c", frpc], clog, cwd=self.ctx.tmp)
        self.wait_for(
            "'start proxy success'",
            lambda: "start proxy success" in self.log_text(clog),
            client,
            clog,
        )
        self.cpu_roots = [server.pid, client.pid]


def toml_bool(flag):
    return "true" if flag else "false"


class Socat(Path):
    label = "socat (fork)"

    def start(self):
        exe = shutil.which("socat")
        if not exe:
            raise Skip("socat not installed (apt-get install -y socat)")
        self.port = _load.free_port()
        p = self.spawn(
            [
                exe,
                f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr",
                f"TCP:127.0.0.1:{self.ctx.backend_port}",
            ],
            "socat.log",
        )
        self.wait_for(
            "socat listening", lambda: _load.port_open(self.port), p, "socat.log"
        )
        self.cpu_roots = [p.pid]


class TwistedFloor(Path):
    """Two chained minimal Twisted forwarders (bench/_floor.py): labrelay's
    tunnel shape with none of its protocol, the floor for a Twisted relay."""

    label = "twisted floor (2 hops)"

    def start(self):
        middle, self.port = _load.free_port(), _load.free_port()
        script = os.path.join(HERE, "_floor.py")
        roots = []
        for name, listen, target in (
            ("floor-inner.log", middle, self.ctx.backend_port),
            ("floor-outer.log", self.port, middle),
        ):
            p = self.spawn([sys.executable, script, str(listen), str(target)], name)
            self.wait_for(
                "forwarder listening",
                lambda port=listen: _load.port_open(port),
                p,
                name,
            )
            roots.append(p.pid)
        self.cpu_roots = roots


class SshForward(Path):
    label = "ssh -N -L"

    def start(self):
        sshd = shutil.which("sshd") or (
            "/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None
        )
        ssh, keygen = shutil.which("ssh"), shutil.which("ssh-keygen")
        if not (sshd and ssh and keygen):
            raise Skip(
                "OpenSSH server/client not installed "
                "(apt-get install -y openssh-server openssh-client)"
            )
        d = os.path.join(self.ctx.tmp, "ssh")
        os.makedirs(d, mode=0o700, exist_ok=True)
        for key in ("host_key", "user_key"):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, key)],
                check=True,
                stdin=subprocess.DEVNULL,
                timeout=20,
            )
        shutil.copy(os.path.join(d, "user_key.pub"), os.path.join(d, "authorized_keys"))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        sshd_port, self.port = _load.free_port(), _load.free_port()
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write(
                f"Port {sshd_port}\nListenAddress 127.0.0.1\n"
                f"HostKey {d}/host_key\nPidFile none\n"
                f"AuthorizedKeysFile {d}/authorized_keys\n"
                "PermitRootLogin yes\nPubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\nAllowTcpForwarding yes\n"
                "LogLevel ERROR\n"
            )
        daemon = self.spawn([sshd, "-D", "-e", "-f", cfg], "sshd.log")
        self.wait_for(
            "sshd listening", lambda: _load.port_open(sshd_port), daemon, "sshd.log"
        )
        client = self.spawn(
            [
                ssh,
                "-N",
                "-F",
                "/dev/null",
                "-i",
                f"{d}/user_key",
                "-p",
                str(sshd_port),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "LogLevel=ERROR",
                "-L",
                f"127.0.0.1:{self.port}:127.0.0.1:{self.ctx.backend_port}",
                f"{getpass.getuser()}@127.0.0.1",
            ],
            "ssh.log",
        )
        self.wait_for(
            "ssh forward listening",
            lambda: _load.port_open(self.port),
            client,
            "ssh.log",
        )
        self.cpu_roots = [daemon.pid, client.pid]


# -- the relay's interpreter -----------------------------------------------------


def add_python_option(ap):
    ap.add_argument(
        "--python",
        metavar="PATH",
        default=None,
        help="interpreter of the labrelay-server and labrelay-client "
        "processes, e.g. a PyPy venv's bin/pypy3 with labrelay's "
        "dependencies installed (default: the one running the bench)",
    )


def relay_python(args):
    """The ``--python`` interpreter as an absolute path (None without the
    option); one that does not run twistd's imports stops the run."""
    if not args.python:
        return None
    exe = shutil.which(args.python) or args.python
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise SystemExit(f"--python {args.python}: not an executable file")
    return os.path.abspath(exe)


def relay_python_line(python):
    """'relay processes: <implementation> <version>, twisted <version>'."""
    if not python:
        return "relay processes: this interpreter"
    probe = (
        "import platform, twisted; print(platform.python_implementation(), "
        "platform.python_version(), 'twisted', twisted.__version__)"
    )
    try:
        out = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise SystemExit(f"--python {python}: {e}")
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"--python {python}: cannot import twisted: {tail}")
    return f"relay processes: {python} ({out.stdout.strip()})"


# -- frp binaries ----------------------------------------------------------------


def add_frp_options(ap):
    ap.add_argument(
        "--frps",
        metavar="PATH",
        default=None,
        help="frps binary for the frp rows (default: 'frps' on "
        "$PATH; without frps and frpc the frp rows are "
        "left out)",
    )
    ap.add_argument(
        "--frpc",
        metavar="PATH",
        default=None,
        help="frpc binary for the frp rows (default: 'frpc' on $PATH)",
    )


def find_frp(args):
    """((frps, frpc), None) when both binaries are at hand, else (None, a
    one-line note saying why the frp rows are left out).  A path given on
    the command line that is not an executable file stops the run."""
    for opt, given in (("--frps", args.frps), ("--frpc", args.frpc)):
        if given and not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise SystemExit(f"{opt} {given}: not an executable file")
    found = {
        name: getattr(args, name) or shutil.which(name) for name in ("frps", "frpc")
    }
    missing = [name for name, exe in found.items() if not exe]
    if missing:
        return None, (
            "frp rows not measured: no "
            + " and no ".join(missing)
            + " (give --frps PATH --frpc PATH, or put them on "
            "$PATH)"
        )
    return (os.path.abspath(found["frps"]), os.path.abspath(found["frpc"])), None


def frp_version(frp):
    """'frp 0.70.0 (frps ..., frpc ...)' for the header."""
    vers = []
    for exe in frp:
        try:
            out = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        vers.append(out.splitlines()[0] if out else "?")
    v = vers[0] if vers[0] == vers[1] else " / ".join(vers)
    return f"frp {v} (frps {frp[0]}, frpc {frp[1]})"


# -- measuring -------------------------------------------------------------------


def measure(path, args, payload):
    """All the measurements of one path; an error names its phase."""
    phase = ["echo check"]
    try:
        return _measure(path, args, payload, phase)
    except (OSError, _load.BenchError) as e:
        raise _load.BenchError(f"{phase[0]}: {e or type(e).__name__}")


def _measure(path, args, payload, phase):
    row = {"label": path.label}
    port = path.port
    if path.cpu_roots:
        # resident memory once logged in and left idle for a few seconds
        phase[0] = "idle RSS"
        time.sleep(args.idle_secs)
        row["rss"] = [k / 1024.0 for k in _load.rss_kib(path.cpu_roots)]
        if args.held:
            # what each open, idle connection costs the relay processes
            phase[0] = "held connections"
            before = sum(_load.rss_kib(path.cpu_roots))
            held = _load.hold_connections(port, args.held)
            try:
                time.sleep(1.0)  # let freed buffers settle before reading
                after = sum(_load.rss_kib(path.cpu_roots))
            finally:
                for s in held:
                    s.close()
            row["held_kib"] = (after - before) / args.held
        phase[0] = "echo check"
    # a few echoes through the path first: the tunnel really works
    _load.ping_pong(port, 10, warmup=0, time_cap=10.0)
    if args.warm_up and path.cpu_roots:
        # unmeasured traffic of every kind first, for a JIT (PyPy's)
        phase[0] = "warm-up"
        end = time.monotonic() + args.warm_up
        while time.monotonic() < end:
            _load.bulk_upload(port, 16 * MiB, payload, timeout=60.0)
        _load.ping_pong(port, 10**6, warmup=0, time_cap=args.warm_up)
        # at most 3000: each leaves sockets in TIME_WAIT, and the
        # loopback's ephemeral ports (about 28,000) are shared by every row
        _load.conn_rate(port, args.warm_up, max_conns=3000)

    phase[0] = "bulk"
    # a short transfer sizes the real one so that it fits in the time cap
    probe = 16 * MiB
    got, secs = _load.bulk_upload(port, probe, payload, timeout=60.0)
    nbytes = args.mib * MiB
    fit = int(got / secs * args.bulk_cap / args.bulk_reps) // MiB * MiB
    row["capped"] = fit < nbytes
    nbytes = max(probe, min(nbytes, fit))

    cpu0 = _load.cpu_seconds(path.cpu_roots) if path.cpu_roots else None
    runs = []
    for _ in range(args.bulk_reps):
        runs.append(
            _load.bulk_upload(port, nbytes, payload, timeout=args.bulk_cap * 3 + 30)
        )
    total = sum(b for b, _ in runs)
    if cpu0 is not None:
        cpu = _load.cpu_seconds(path.cpu_roots) - cpu0
        row["cpu_per_gb"] = cpu / (total / 1e9)
    rates = sorted(b / MiB / t for b, t in runs)
    row["bytes"] = nbytes
    row["mibs"] = rates[len(rates) // 2]  # the median run

    if args.download:
        phase[0] = "download"
        dbytes, dsecs = _load.bulk_download(port, args.mib * MiB, args.bulk_cap)
        row["down_mibs"] = dbytes / MiB / dsecs

    phase[0] = "ping-pong"
    # every process of the run on one CPU while ping-ponging: otherwise the
    # scheduler's placement (same CPU or not) moves p50 by ~40 us at random
    pinned = (
        _load.pin([os.getpid()], {args.rtt_cpu}) if args.rtt_cpu is not None else {}
    )
    try:
        rtts = _load.ping_pong(port, args.pings, time_cap=30.0)
    finally:
        _load.unpin(pinned)
    row["p50"] = _load.percentile(rtts, 50) / 1000.0
    row["p99"] = _load.percentile(rtts, 99) / 1000.0
    row["pings"] = len(rtts)

    phase[0] = "new connections"
    done, csecs, errors = _load.conn_rate(port, args.conn_secs)
    row["conns"] = done / csecs
    row["conn_errors"] = errors

    phase[0] = "half-close"
    row["half_close"] = _load.half_close_ok(port)
    return row


# -- output ----------------------------------------------------------------------


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def versions(tree):
    import twisted

    lines = []
    cpus = len(os.sched_getaffinity(0))
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines.append(
        f"machine: nproc={cpus} ({model or platform.machine()}), "
        f"Linux {platform.release()}"
    )
    lines.append(
        f"python {platform.python_version()}, "
        f"twisted {twisted.__version__}, labrelay from {tree}"
    )
    lines.append(
        f"load average before the run: {loadavg()} "
        "(other work on this machine skews every row)"
    )
    tools = []
    if shutil.which("socat"):
        out = subprocess.run(
            ["socat", "-V"], capture_output=True, text=True, timeout=10
        ).stdout
        for line in out.splitlines():
            if line.startswith("socat version"):
                tools.append(" ".join(line.split()[:3]))
                break
    if shutil.which("ssh"):
        out = subprocess.run(
            ["ssh", "-V"], capture_output=True, text=True, timeout=10
        ).stderr.strip()
        tools.append(out.split(",")[0])
    if tools:
        lines.append("others: " + ", ".join(tools))
    return lines


def fmt_table(rows, direct, args):
    head = [
        "path",
        "MiB/s",
        "Gbit/s",
        "x direct",
        "RTT p50 us",
        "+p50",
        "RTT p99 us",
        "+p99",
        "conn/s",
        "x direct",
        "relay CPU-s/GB",
        "idle RSS MiB",
        "KiB/held conn",
    ]
    if args.download:
        head.insert(4, "down MiB/s")
    table = [head]
    for r in rows:
        if "skip" in r:
            table.append([r["label"], f"skipped: {r['skip']}"])
            continue
        mark = "*" if r.get("capped") else ""
        cells = [
            r["label"],
            f"{r['mibs']:.0f}{mark}",
            f"{r['mibs'] * MiB * 8 / 1e9:.2f}",
            f"{r['mibs'] / direct['mibs']:.2f}",
            f"{r['p50']:.0f}",
            "-" if r is direct else f"{round(r['p50'] - direct['p50']):+d}",
            f"{r['p99']:.0f}",
            "-" if r is direct else f"{round(r['p99'] - direct['p99']):+d}",
            f"{r['conns']:.0f}"
            + (f" ({r['conn_errors']} err)" if r["conn_errors"] else ""),
            f"{r['conns'] / direct['conns']:.3f}",
            f"{r['cpu_per_gb']:.2f}" if "cpu_per_gb" in r else "-",
            fmt_rss(r["rss"]) if "rss" in r else "-",
            f"{r['held_kib']:.1f}" if "held_kib" in r else "-",
        ]
        if args.download:
            cells.insert(4, f"{r['down_mibs']:.0f}")
        table.append(cells)
    return align(table, left_columns=1)


def fmt_rss(parts):
    """'total (server+client)' in MiB."""
    total = f"{sum(parts):.1f}"
    if len(parts) < 2:
        return total
    return total + " (" + "+".join(f"{p:.1f}" for p in parts) + ")"


def pairs(rows):
    """(suffix, labrelay row, frp row) for each 'labrelay X' row measured
    with a measured 'frp X' row, in table order."""
    measured = {r["label"]: r for r in rows if "skip" not in r}
    out = []
    for r in rows:
        label = r["label"]
        if label.startswith("labrelay ") and label in measured:
            suffix = label[len("labrelay ") :]
            other = measured.get("frp " + suffix)
            if other is not None:
                out.append((suffix, r, other))
    return out


def ratio(a, b, digits=2):
    if a is None or b is None or not b or a != a or b != b:
        return "-"
    return f"{a / b:.{digits}f}"


def fmt_ratios(rows):
    """The 'labrelay / frp' table: one row per pair of matching rows."""
    found = pairs(rows)
    if not found:
        return []
    table = [
        [
            "labrelay / frp",
            "MiB/s",
            "RTT p50",
            "RTT p99",
            "conn/s",
            "CPU-s/GB",
            "idle RSS",
            "KiB/held",
        ]
    ]
    for suffix, lab, frp in found:
        table.append(
            [
                suffix,
                ratio(lab["mibs"], frp["mibs"]),
                ratio(lab["p50"], frp["p50"]),
                ratio(lab["p99"], frp["p99"]),
                ratio(lab["conns"], frp["conns"]),
                ratio(lab.get("cpu_per_gb"), frp.get("cpu_per_gb")),
                ratio(
                    sum(lab["rss"]) if "rss" in lab else None,
                    sum(frp["rss"]) if "rss" in frp else None,
                ),
                ratio(lab.get("held_kib"), frp.get("held_kib")),
            ]
        )
    return align(table, left_columns=1)


def align(table, left_columns):
    """Text lines of *table* (its first row the head): the first
    *left_columns* columns left-aligned, the rest right-aligned, a rule under
    the head; a shorter row (a note) is written as it is after its label."""
    head = table[0]
    full = [t for t in table if len(t) == len(head)]
    widths = [max(len(t[i]) for t in full) for i in range(len(head))]
    out = []
    for i, t in enumerate(table):
        if len(t) != len(head):
            out.append("  ".join([t[0].ljust(widths[0])] + t[1:]))
            continue
        out.append(
            "  ".join(
                c.ljust(widths[j]) if j < left_columns else c.rjust(widths[j])
                for j, c in enumerate(t)
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


# -- main ------------------------------------------------------------------------


class Context:
    """What a run started (processes, a temporary directory) and runs with
    (environment, source tree); see :func:`start_run`."""


class Interrupted(Exception):
    pass


def start_run(tree, hard_seconds, tmp_prefix):
    """
    Arm the run's hard time limit and signal handling (SIGALRM, SIGTERM and
    Ctrl-C all raise, so the caller's ``finally`` stops what was started),
    and return a :class:`Context` whose environment runs *tree*'s labrelay.
    """

    def on_signal(signum, frame):
        raise Interrupted(
            "time limit reached"
            if signum == signal.SIGALRM
            else f"signal {signal.Signals(signum).name}"
        )

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGALRM, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.alarm(int(hard_seconds))

    ctx = Context()
    ctx.started = []
    ctx.tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    ctx.env = dict(os.environ)
    ctx.tree = tree
    ctx.env["PYTHONPATH"] = os.pathsep.join(
        [tree] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="64 MiB bulk, for a run of about one minute",
    )
    ap.add_argument(
        "--mib",
        type=int,
        default=None,
        help="MiB per bulk transfer (default 512, --quick 64)",
    )
    ap.add_argument(
        "--bulk-reps",
        type=int,
        default=3,
        help="bulk transfers per path; the median is shown",
    )
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--conn-secs", type=float, default=2.0)
    ap.add_argument(
        "--download",
        action="store_true",
        help="also measure backend-to-client bulk throughput",
    )
    ap.add_argument(
        "--no-tls-rows",
        action="store_true",
        help="leave out the tls_enable = false labrelay rows",
    )
    ap.add_argument(
        "--tree",
        default=REPO,
        help="labrelay source tree to run (default: this repository's working tree)",
    )
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="measure RTT without pinning the processes to one CPU (noisier)",
    )
    ap.add_argument(
        "--held",
        type=int,
        default=200,
        help="connections held open through each relay to read the memory "
        "each costs (default 200; 0 leaves it out)",
    )
    ap.add_argument(
        "--idle-secs",
        type=float,
        default=3.0,
        help="idle time after 'start proxy success' before the "
        "relay's resident memory is read (default 3)",
    )
    ap.add_argument(
        "--warm-up",
        type=float,
        default=0.0,
        metavar="S",
        help="S seconds each of bulk, ping-pongs and new connections "
        "(at most 3000) through each relay, unmeasured, after its idle RSS "
        "reading and before its measurements (for PyPy's JIT; default 0)",
    )
    add_python_option(ap)
    add_frp_options(ap)
    args = ap.parse_args()
    args.tree = os.path.abspath(args.tree)
    args.python = relay_python(args)
    args.rtt_cpu = None if args.no_pin else max(os.sched_getaffinity(0))
    if args.mib is None:
        args.mib = 64 if args.quick else 512
    args.bulk_cap = 8.0 if args.quick else 25.0  # s, all reps of a path
    frp, frp_note = find_frp(args)
    relays = 6 + 2 + (4 if frp else 0)  # paths with an idle RSS reading
    # whole run, soft: the old budget plus the extra rows and idle waits
    budget = (
        (75.0 if args.quick else 290.0)
        + (4 if frp else 0) * (6.0 if args.quick else 30.0)
        + relays * (args.idle_secs + (3.0 if args.held else 0.0))
        + relays * 3.5 * args.warm_up
    )
    hard = budget + 40.0  # whole run, SIGALRM

    ctx = start_run(args.tree, hard, "labrelay-bench-")
    ctx.frp = frp
    ctx.python = args.python
    t_start = time.monotonic()
    other_load = _load.OtherLoad()
    rows, notes = [], []
    interrupted = False
    try:
        for line in versions(args.tree):
            print(line, flush=True)
        print(relay_python_line(args.python), flush=True)
        print(frp_version(frp) if frp else frp_note, flush=True)
        print(
            f"bulk {args.bulk_reps} x {args.mib} MiB per path "
            f"(at most {args.bulk_cap:.0f} s), "
            f"{args.pings} x 64-byte ping-pongs, new connections for "
            f"{args.conn_secs:g} s",
            flush=True,
        )
        backend = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "_load.py"),
                "backend",
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
        payload = os.urandom(_load.CHUNK)  # random: incompressible
        # warm the backend up (threads, allocator, caches) before any row
        _load.bulk_upload(ctx.backend_port, 64 * MiB, payload)
        _load.ping_pong(ctx.backend_port, 500, time_cap=10.0)

        paths = [Direct(ctx)]

        def pair(suffix, **kw):
            # frp's row right after labrelay's: same drift, easy to compare
            paths.append(Labrelay(ctx, "labrelay " + suffix, **kw))
            if frp:
                paths.append(Frp(ctx, "frp " + suffix, **kw))

        pair("mux")
        pair("no-mux", tcp_mux=False)
        paths.append(Labrelay(ctx, "labrelay mux+enc+comp", crypt=True))
        if not args.no_tls_rows:
            pair("mux, no tls", tls=False)
            pair("no-mux, no tls", tcp_mux=False, tls=False)
        paths += [
            TwistedFloor(ctx),
            Socat(ctx),
            SshForward(ctx),
            Direct(ctx, "direct (again)"),
        ]
        for path in paths:
            left = budget - (time.monotonic() - t_start)
            if left < (12 if args.quick else 30):
                rows.append({"label": path.label, "skip": "time budget used up"})
                continue
            print(f"  {path.label} ...", end="", flush=True)
            t0 = time.monotonic()
            try:
                path.start()
                row = measure(path, args, payload)
                rows.append(row)
                print(f" {time.monotonic() - t0:.1f} s", flush=True)
            except Skip as e:
                rows.append({"label": path.label, "skip": str(e)})
                print(" skipped", flush=True)
            except (RuntimeError, OSError, _load.BenchError) as e:
                rows.append(
                    {"label": path.label, "skip": f"failed: {str(e).splitlines()[0]}"}
                )
                print(f" failed: {e}", flush=True)
                for line in path.error_lines():
                    print(f"      {line[:300]}", flush=True)
            finally:
                path.stop()
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        notes.append(f"run interrupted ({e or 'Ctrl-C'}); partial results")
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
    for line in fmt_table(rows, direct, args):
        print(line)
    print()
    ratios = fmt_ratios(rows)
    for line in ratios:
        print(line)
    if ratios:
        print()
    if any(r.get("capped") for r in rows):
        notes.append(
            "* bulk transfer shortened to fit the "
            f"{args.bulk_cap:.0f} s cap: "
            + ", ".join(
                f"{r['label']} {r['bytes'] // MiB} MiB" for r in rows if r.get("capped")
            )
        )
    no_hc = [r["label"] for r in rows if "skip" not in r and not r["half_close"]]
    notes.append(
        "half-close (send, shutdown(SHUT_WR), read the reply) "
        + ("fails through: " + ", ".join(no_hc) if no_hc else "works on every path")
    )
    notes.append(
        "RTT: "
        + (
            f"every process pinned to CPU {args.rtt_cpu} during the ping-pongs"
            if args.rtt_cpu is not None
            else "not pinned"
        )
    )
    notes.append(
        "ratios and +deltas are against the first 'direct' row; "
        "'direct (again)' shows the drift within the run"
    )
    notes.append(
        "labrelay rows: tls_enable = true (the frpc default) unless "
        "'no tls'; enc+comp = use_encryption + use_compression on "
        "random data"
    )
    if frp:
        notes.append(
            "frp rows: frps/frpc from --frps/--frpc, TOML config, "
            "frp's defaults (transport.tls.enable = true, tcpMux = "
            "true) unless 'no tls' / 'no-mux'"
        )
    else:
        notes.append(frp_note)
    notes.append(
        f"idle RSS: VmRSS of server + client after 'start proxy "
        f"success' and {args.idle_secs:g} s idle, before any "
        "traffic (socat, ssh: the listener/sshd and ssh with their "
        "children)"
    )
    if args.held:
        notes.append(
            f"KiB/held conn: growth of the relay processes' RSS with "
            f"{args.held} connections open and idle (one echoed byte each), "
            "per connection"
        )
    if ratios:
        notes.append(
            "labrelay / frp: above 1 is better for labrelay in "
            "MiB/s and conn/s, below 1 is better in RTT, CPU-s/GB, "
            "idle RSS and KiB/held"
        )
    for n in notes:
        print(n)
    print(
        f"total time {time.monotonic() - t_start:.0f} s, "
        f"load average after: {loadavg()}"
    )
    print(other_load.report())
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
