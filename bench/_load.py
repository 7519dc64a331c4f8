"""
Helpers of ``bench/tunnel_bench.py`` and ``bench/vhost_bench.py``: the
backend servers, the measuring client and process bookkeeping (free ports,
CPU time, clean-up).  The HTTP backend of ``vhost_bench.py``
(``python3 bench/_load.py http-backend``) is described at
:func:`run_http_backend`.

The backend runs in its own process (``python3 bench/_load.py backend``) so
that the measuring client never shares a CPU loop with it.  It prints
``PORT <n>`` on stdout once it listens and exits when its stdin closes (the
bench died) or after ``--lifetime`` seconds.  The first byte of every
connection selects what it does:

``S``  sink: read an 8-byte big-endian count n, read n bytes, reply with
       the count received (8 bytes), then wait for EOF;
``H``  half-close sink: read until EOF, then reply with the byte count (8
       bytes, the ``H`` not counted): works only through a relay that
       passes a half-close on and keeps the other direction open;
``R``  source: read an 8-byte big-endian count, send that many bytes, close;
other  echo: echo everything, the first byte included, until EOF.
"""

import argparse
import os
import signal
import socket
import struct
import threading
import time

CHUNK = 4 << 20  # bytes per send() of the bulk client
RECV_BUF = 1 << 20  # recv_into buffer of the sink


# -- backend -----------------------------------------------------------------


def _serve(conn, pattern):
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(120)
        first = conn.recv(65536)
        if not first:
            return
        mode = first[:1]
        if mode == b"H":
            total = len(first) - 1
            buf = bytearray(RECV_BUF)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
            conn.sendall(struct.pack("!Q", total))
            return
        if mode not in (b"S", b"R"):
            conn.sendall(first)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            return
        head = first[1:]
        while len(head) < 8:
            more = conn.recv(65536)
            if not more:
                return
            head += more
        want, extra = struct.unpack("!Q", head[:8])[0], len(head) - 8
        if mode == b"S":
            total = extra
            buf = bytearray(RECV_BUF)
            view = memoryview(buf)
            while total < want:
                n = conn.recv_into(view[: min(RECV_BUF, want - total)])
                if not n:
                    break
                total += n
            conn.sendall(struct.pack("!Q", total))
            conn.recv(1)  # wait for the peer's close
        else:
            left = want
            view = memoryview(pattern)
            while left > 0:
                n = min(left, len(view))
                conn.sendall(view[:n])
                left -= n
            conn.recv(1)  # wait for the peer's close
    except OSError:
        pass
    finally:
        conn.close()


def run_backend(lifetime):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.settimeout(1.0)
    pattern = os.urandom(CHUNK)
    stop = threading.Event()

    def watch_stdin():
        try:
            while os.read(0, 4096):
                pass
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"PORT {lsock.getsockname()[1]}", flush=True)
    deadline = time.monotonic() + lifetime
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.01)
            continue
        threading.Thread(target=_serve, args=(conn, pattern), daemon=True).start()
    lsock.close()


# -- measuring client ----------------------------------------------------------


class BenchError(Exception):
    pass


def _connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exact(s, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[got:])
        if not k:
            raise BenchError(f"connection closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


def bulk_upload(port, nbytes, payload, timeout=60.0):
    """Send ``nbytes`` to the sink; the clock stops when the sink has
    confirmed the byte count.  The count goes first, so no half-close is
    needed (a relay that closes both ways at the first EOF is measured
    too).  Returns (bytes confirmed, seconds)."""
    s = _connect(port, timeout=timeout)
    try:
        view = memoryview(payload)
        t0 = time.perf_counter()
        s.sendall(b"S" + struct.pack("!Q", nbytes))
        sent = 0
        while sent < nbytes:
            n = min(len(view), nbytes - sent)
            s.sendall(view[:n])
            sent += n
        got = struct.unpack("!Q", _recv_exact(s, 8))[0]
        t1 = time.perf_counter()
    finally:
        s.close()
    if got != sent:
        raise BenchError(f"sink received {got} bytes, {sent} sent")
    return got, t1 - t0


def half_close_ok(port, nbytes=256 << 10):
    """Send ``nbytes``, shut the write half, read the sink's byte count: True
    when the relay passes the half-close on and keeps the reply path open."""
    s = _connect(port, timeout=10.0)
    try:
        s.sendall(b"H" + os.urandom(nbytes))
        s.shutdown(socket.SHUT_WR)
        got = struct.unpack("!Q", _recv_exact(s, 8))[0]
        return got == nbytes
    except (OSError, BenchError):
        return False
    finally:
        s.close()


def bulk_download(port, nbytes, time_cap):
    """Receive ``nbytes`` from the source; returns (bytes, seconds)."""
    s = _connect(port, timeout=max(30.0, time_cap))
    try:
        buf = bytearray(RECV_BUF)
        t0 = time.perf_counter()
        s.sendall(b"R" + struct.pack("!Q", nbytes))
        got = 0
        while got < nbytes:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
            if time.perf_counter() - t0 > time_cap:
                break
        t1 = time.perf_counter()
    finally:
        s.close()
    return got, t1 - t0


def ping_pong(port, count, size=64, warmup=100, time_cap=30.0):
    """``count`` round trips of ``size`` bytes on one connection, after
    ``warmup`` unmeasured ones.  Returns the list of RTTs in ns."""
    s = _connect(port, timeout=5.0)
    msg = bytes([0x45]) + os.urandom(size - 1)  # 'E': echo mode
    buf = bytearray(size)
    view = memoryview(buf)
    rtts = []
    clock = time.perf_counter_ns
    deadline = time.monotonic() + time_cap
    try:
        for i in range(warmup + count):
            t0 = clock()
            s.sendall(msg)
            got = 0
            while got < size:
                k = s.recv_into(view[got:])
                if not k:
                    raise BenchError("echo connection closed")
                got += k
            t1 = clock()
            if buf != msg:
                raise BenchError("echo returned different bytes")
            if i >= warmup:
                rtts.append(t1 - t0)
            if time.monotonic() > deadline:
                break
    finally:
        s.close()
    return rtts


def conn_rate(port, duration, max_conns=50000):
    """Sequential connect + 1 byte out + 1 byte back + close for
    ``duration`` s.  Returns (connections, seconds, errors)."""
    done = errors = 0
    t0 = time.perf_counter()
    end = t0 + duration
    while time.perf_counter() < end and done + errors < max_conns:
        try:
            s = _connect(port, timeout=5.0)
            try:
                s.sendall(b"E")
                if s.recv(1) != b"E":
                    raise BenchError("bad reply")
            finally:
                s.close()
            done += 1
        except (OSError, BenchError):
            errors += 1
            if errors > 50:
                break
            time.sleep(0.01)
    return done, time.perf_counter() - t0, errors


def hold_connections(port, count, timeout=10.0):
    """Open *count* connections and echo one byte through each, so that
    every one is set up end to end; returns the open sockets (the caller
    closes them)."""
    socks = []
    try:
        for _ in range(count):
            s = _connect(port, timeout=timeout)
            socks.append(s)
            s.sendall(b"E")
            if _recv_exact(s, 1) != b"E":
                raise BenchError("bad echo on a held connection")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# -- processes -----------------------------------------------------------------


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(port, timeout=0.2):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _proc_table():
    """pid -> (ppid, utime+stime+cutime+cstime in ticks) of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        # fields after "(comm)": state=0 ppid=1 ... utime=11 stime=12
        # cutime=13 cstime=14
        table[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def descendants(roots, table=None):
    table = _proc_table() if table is None else table
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [p for p in roots if p in table]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def cpu_seconds(roots):
    """CPU seconds (user+system) used so far by ``roots``, their live
    descendants and the children they have reaped.  A child that exits
    between two readings moves into its parent's cutime, so differences of
    two readings count it once."""
    table = _proc_table()
    ticks = sum(table[p][1] for p in descendants(roots, table))
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU seconds all CPUs of the machine have been busy since boot (the
    non-idle, non-iowait fields of /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal (guest: in user)
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU time the rest of the machine spends while the bench runs: all
    busy CPU time minus that of this process and its descendants (the
    relays, the backend, wrk, ...)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.busy0 = busy_seconds()
        self.own0 = cpu_seconds([os.getpid()])

    def report(self):
        """'other processes: X CPU-s in Y s (Z CPUs on average)'."""
        busy = busy_seconds()
        if busy is None or self.busy0 is None:
            return "other processes: unknown (no /proc/stat)"
        wall = time.monotonic() - self.t0
        other = max(0.0, (busy - self.busy0) - (cpu_seconds([os.getpid()]) - self.own0))
        return (
            f"other processes on the machine used {other:.0f} CPU-s "
            f"during the {wall:.0f} s run ({other / wall:.2f} of "
            f"{len(os.sched_getaffinity(0))} CPUs on average)"
        )


def rss_kib(roots):
    """Resident memory (VmRSS, KiB) of each of ``roots`` with its live
    descendants, in the order of ``roots``."""
    table = _proc_table()
    out = []
    for root in roots:
        total = 0
        for pid in descendants([root], table):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
        out.append(total)
    return out


def _start_time(pid):
    """Start time of ``pid`` (to be sure a pid was not reused), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[19])


def pin(pids, cpus):
    """Set the CPU affinity of every thread of ``pids`` (and of their
    descendants) to ``cpus``; returns {tid: old mask} for :func:`unpin`.
    Threads that start later inherit the mask of their creator."""
    old = {}
    for pid in descendants(pids):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                old[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass
    return old


def unpin(old):
    for tid, mask in old.items():
        try:
            os.sched_setaffinity(tid, mask)
        except OSError:
            pass


def stop_processes(procs, grace=3.0):
    """SIGTERM every process group we started (and any descendant that left
    it, e.g. sshd's per-connection children), then SIGKILL what is left."""
    procs = [p for p in procs if p is not None]
    roots = [p.pid for p in procs]
    extra = {pid: _start_time(pid) for pid in descendants(roots) - set(roots)}
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
    for pid in extra:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.05, deadline - time.monotonic()))
        except Exception:
            pass
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=2)
            except Exception:
                pass
    for pid, started in extra.items():
        if started is not None and _start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# -- HTTP backend (bench/vhost_bench.py) -----------------------------------------

#: Body sizes of the HTTP backend's two resources.
HTTP_SMALL = 100
HTTP_BIG = 1 << 20


def _http_response(body, close=False):
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n%s\r\n"
        % (len(body), b"Connection: close\r\n" if close else b"")
        + body
    )


def run_http_backend(lifetime):
    """
    ``python3 bench/_load.py http-backend``: a small asyncio HTTP/1.1
    keep-alive server on 127.0.0.1 (port printed as ``PORT <n>``).
    ``GET /small`` answers :data:`HTTP_SMALL` bytes, ``GET /big``
    :data:`HTTP_BIG` bytes, both with Content-Length; ``GET /stats`` answers
    ``<connections accepted> <requests answered>`` (this request included).
    Pipelined requests and Content-Length request bodies are handled;
    ``Connection: close`` (or HTTP/1.0 without keep-alive) closes after the
    response.  Exits when stdin closes or after *lifetime* seconds.
    """
    import asyncio

    small, big = os.urandom(HTTP_SMALL), os.urandom(HTTP_BIG)
    canned = {}
    for close in (False, True):
        canned[b"/small", close] = _http_response(small, close)
        canned[b"/big", close] = _http_response(big, close)
    stats = [0, 0]  # connections, requests

    class Conn(asyncio.Protocol):
        def connection_made(self, transport):
            stats[0] += 1
            self.t = transport
            self.buf = b""
            self.skip = 0  # request body bytes still to discard
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data):
            buf = self.buf + data if self.buf else data
            while buf:
                if self.skip:
                    n = min(self.skip, len(buf))
                    self.skip -= n
                    buf = buf[n:]
                    continue
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        self.t.close()
                        return
                    break
                head, buf = buf[:end], buf[end + 4 :]
                lines = head.split(b"\r\n")
                parts = lines[0].split()
                if len(parts) != 3:
                    self.t.write(
                        b"HTTP/1.1 400 Bad Request\r\n"
                        b"Content-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    self.t.close()
                    return
                method, target, version = parts
                close = version == b"HTTP/1.0"
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        self.skip = int(value)
                    elif name == b"connection":
                        v = value.strip().lower()
                        close = v == b"close" or (close and v != b"keep-alive")
                stats[1] += 1
                path = target.split(b"?", 1)[0]
                if path == b"/stats":
                    body = b"%d %d" % (stats[0], stats[1])
                    resp = _http_response(body, close)
                else:
                    resp = canned.get((path, close))
                    if resp is None:
                        resp = (
                            b"HTTP/1.1 404 Not Found\r\n"
                            b"Content-Length: 0\r\n%s\r\n"
                            % (b"Connection: close\r\n" if close else b"")
                        )
                    elif method == b"HEAD":
                        resp = resp[: resp.index(b"\r\n\r\n") + 4]
                self.t.write(resp)
                if close:
                    self.t.close()
                    return
            self.buf = buf

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finish():
            if not done.done():
                done.set_result(None)

        def watch_stdin():
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            loop.call_soon_threadsafe(finish)

        threading.Thread(target=watch_stdin, daemon=True).start()
        server = await loop.create_server(
            Conn, "127.0.0.1", 0, backlog=1024, reuse_address=True
        )
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        try:
            await asyncio.wait_for(done, lifetime)
        except asyncio.TimeoutError:
            pass
        server.close()

    asyncio.run(main())


def http_get(port, path, host, timeout=10.0):
    """One GET on a fresh connection: (status, body)."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["backend", "http-backend"])
    ap.add_argument("--lifetime", type=float, default=900.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    if args.role == "http-backend":
        run_http_backend(args.lifetime)
    else:
        run_backend(args.lifetime)
    os._exit(0)
