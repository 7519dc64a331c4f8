"""
Test harness for real processes: ``twistd labrelay-server`` and
``twistd labrelay-client`` run from the working tree, and helpers for other
programs (sshd, ssh, ssh-keygen).

Every process is spawned through :func:`spawn`, which registers a cleanup
that ends it (SIGTERM, then SIGKILL) and waits for its exit, so a failing
test leaves nothing running.  Every wait is on an event (a line matching a
regex in the process's output, the process's exit) with a bound.
"""

import codecs
import hashlib
import os
import re
import socket
import sys

from twisted.internet import defer, error, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from . import paths
from .formats import in_format

#: The repository root: put first on PYTHONPATH so that twistd finds the
#: working tree's labrelay package and twisted/plugins dropin.
REPO_ROOT = paths.REPO_ROOT.path

#: twistd has no ``__main__``; this is what the ``twistd`` script runs.
TWISTD = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
]

TOKEN = "process-test-token"

_log = Logger()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """The resident set size of process *pid* (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                value, unit = line.split()[1:3]
                assert unit == "kB", line
                return int(value) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    """How many file descriptors process *pid* has open (/proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def child_env(**extra) -> dict:
    """The environment of a spawned process: ours, with the repo root first
    on PYTHONPATH and unbuffered output."""
    env = dict(os.environ)
    path = [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _bounded(d, waiters, entry, timeout, message):
    """*d*, failing with AssertionError(message()) when *entry* is still in
    *waiters* after *timeout* seconds (it is then taken out)."""

    def expire():
        if entry in waiters:
            waiters.remove(entry)
            d.errback(AssertionError(message()))

    call = reactor.callLater(timeout, expire)

    def done(result):
        if call.active():
            call.cancel()
        return result

    return d.addBoth(done)


class ProcessOutput(ProcessProtocol):
    """
    Collects a process's stdout and stderr and lets a test wait for a regex
    to appear in them, or for the process to exit.

    :ivar output: stdout and stderr as text, interleaved as they arrived
        (unless *binary_stdout*: then stdout is only hashed and counted).
    :ivar exit_code: the exit status, or None while running or when the
        process died of a signal (then :ivar exit_signal: is set).
    """

    def __init__(self, name, binary_stdout=False, stdin_data=None):
        self.name = name
        self.output = ""
        self.stderr = ""
        self.binary_stdout = binary_stdout
        self.stdout_sha256 = hashlib.sha256()
        self.stdout_bytes = 0
        self.pid = None
        self.ended = False
        self.exit_code = None
        self.exit_signal = None
        self._stdin_data = stdin_data
        self._decoders = {
            fd: codecs.getincrementaldecoder("utf-8")(errors="replace") for fd in (1, 2)
        }
        self._waiters = []  # (regex, since, Deferred)
        self._exit_waiters = []

    def connectionMade(self):
        self.pid = self.transport.pid
        if self._stdin_data is not None:
            self.transport.write(self._stdin_data)
            self._stdin_data = None
            self.transport.closeStdin()

    def outReceived(self, data):
        if self.binary_stdout:
            self.stdout_sha256.update(data)
            self.stdout_bytes += len(data)
        else:
            self._text(1, data)

    def errReceived(self, data):
        self._text(2, data)

    def _text(self, fd, data):
        text = self._decoders[fd].decode(data)
        if fd == 2:
            self.stderr += text
        self.output += text
        # The list is changed in place: _bounded holds it to take a
        # timed-out waiter out.
        for entry in list(self._waiters):
            regex, since, d = entry
            match = regex.search(self.output, since)
            if match:
                self._waiters.remove(entry)
                d.callback(match)

    def processEnded(self, reason):
        self.ended = True
        if isinstance(reason.value, (error.ProcessDone, error.ProcessTerminated)):
            self.exit_code = reason.value.exitCode
            self.exit_signal = reason.value.signal
        waiting = list(self._waiters)
        self._waiters.clear()
        for regex, _, d in waiting:
            d.errback(
                AssertionError(
                    f"{self.name} exited ({self.describe_exit()}) before "
                    f"printing a line matching {regex.pattern!r}; output:\n"
                    f"{self.tail()}"
                )
            )
        exits = list(self._exit_waiters)
        self._exit_waiters.clear()
        for d in exits:
            d.callback(self.exit_code)

    # What tests use.

    def mark(self) -> int:
        """A position in :ivar output: for ``wait_for(..., since=)``."""
        return len(self.output)

    def tail(self, chars=6000) -> str:
        return self.output[-chars:]

    def describe_exit(self) -> str:
        if self.exit_signal is not None:
            return f"signal {self.exit_signal}"
        return f"status {self.exit_code}"

    def count(self, pattern) -> int:
        """How many times *pattern* occurs in the output so far."""
        return len(re.findall(pattern, self.output, re.MULTILINE))

    def wait_for(self, pattern, since=0, timeout=15):
        """
        A Deferred firing with the first ``re.Match`` of *pattern*
        (multiline) in the output after position *since*; it fails if the
        process exits first or after *timeout* seconds.
        """
        regex = re.compile(pattern, re.MULTILINE)
        match = regex.search(self.output, since)
        if match:
            return defer.succeed(match)
        if self.ended:
            return defer.fail(
                AssertionError(
                    f"{self.name} has exited ({self.describe_exit()}) without a "
                    f"line matching {pattern!r}; output:\n{self.tail()}"
                )
            )
        d = defer.Deferred()
        entry = (regex, since, d)
        self._waiters.append(entry)
        return _bounded(
            d,
            self._waiters,
            entry,
            timeout,
            lambda: (
                f"{self.name}: no line matching {pattern!r} within "
                f"{timeout}s; output so far:\n{self.tail()}"
            ),
        )

    def when_exited(self, timeout=15):
        """A Deferred firing with the exit code (None after a signal); it
        fails if the process still runs after *timeout* seconds."""
        if self.ended:
            return defer.succeed(self.exit_code)
        d = defer.Deferred()
        self._exit_waiters.append(d)
        return _bounded(
            d,
            self._exit_waiters,
            d,
            timeout,
            lambda: (
                f"{self.name} (pid {self.pid}) still running after "
                f"{timeout}s; output so far:\n{self.tail()}"
            ),
        )

    def signal(self, name) -> None:
        """Send signal *name* ("TERM", "KILL") unless the process has ended."""
        if self.ended:
            return
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    async def stop(self, timeout=10):
        """End the process: SIGTERM, then SIGKILL; wait for its exit."""
        if not self.ended:
            self.signal("TERM")
            try:
                await self.when_exited(timeout)
            except AssertionError:
                self.signal("KILL")
                await self.when_exited(timeout)
        _log.info(
            "{name} (pid {pid}) ended with {how}; output:\n{output}",
            name=self.name,
            pid=self.pid,
            how=self.describe_exit(),
            output=self.tail(20000),
        )


def spawn(
    testcase,
    name,
    argv,
    *,
    path=None,
    env=None,
    binary_stdout=False,
    stdin_data=None,
    stdin_fd=None,
):
    """
    Start *argv* as a child process of the test; it is stopped (and waited
    for) in the test's cleanup.  Returns its :class:`ProcessOutput`.

    :param stdin_data: bytes written to its stdin, which is then closed.
    :param stdin_fd: a file descriptor of ours to give it as stdin.
    """
    protocol = ProcessOutput(name, binary_stdout=binary_stdout, stdin_data=stdin_data)
    child_fds = {0: "w" if stdin_fd is None else stdin_fd, 1: "r", 2: "r"}
    reactor.spawnProcess(
        protocol,
        argv[0],
        argv,
        env=child_env() if env is None else env,
        path=path,
        childFDs=child_fds,
    )
    testcase.addCleanup(lambda: defer.ensureDeferred(protocol.stop()))
    return protocol


async def run(testcase, name, argv, timeout=60, **kwargs):
    """Run *argv* to completion; return its :class:`ProcessOutput`."""
    protocol = spawn(testcase, name, argv, **kwargs)
    await protocol.when_exited(timeout)
    return protocol


def twistd(testcase, command, config_path, name=None, cwd=None):
    """Spawn ``twistd -n --pidfile= COMMAND -c CONFIG`` from the working tree."""
    argv = TWISTD + ["-n", "--pidfile=", command, "-c", config_path]
    return spawn(
        testcase, name or command, argv, path=cwd or os.path.dirname(config_path)
    )


# Configurations and labrelay processes.


def _mux_line(mux) -> str:
    """``tcp_mux`` as a config line; None leaves frp's default (on)."""
    return "" if mux is None else f"tcp_mux = {str(bool(mux)).lower()}\n"


def server_ini(bind_port, mux=None, token=TOKEN, extra="") -> str:
    return (
        "[common]\nbind_addr = 127.0.0.1\n"
        f"bind_port = {bind_port}\ntoken = {token}\n" + _mux_line(mux) + extra
    )


def client_ini(server_port, proxies, mux=None, token=TOKEN, extra="") -> str:
    """*proxies*: (name, local_port, remote_port) triples of tcp proxies."""
    text = (
        "[common]\nserver_addr = 127.0.0.1\n"
        f"server_port = {server_port}\ntoken = {token}\n" + _mux_line(mux) + extra
    )
    for name, local_port, remote_port in proxies:
        text += (
            f"\n[{name}]\ntype = tcp\nlocal_ip = 127.0.0.1\n"
            f"local_port = {local_port}\nremote_port = {remote_port}\n"
        )
    return text


def write_config(testcase, filename, text) -> str:
    """Write *text* to a fresh directory of the test; return the path."""
    directory = FilePath(testcase.mktemp())
    directory.makedirs()
    path = directory.child(filename)
    path.setContent(text.encode("utf-8"))
    return path.path


class ServerProcess:
    """A ``twistd labrelay-server`` process."""

    def __init__(self, process, port, config_path):
        self.process = process
        self.port = port
        self.config_path = config_path

    @property
    def pid(self):
        return self.process.pid


async def start_server(
    testcase, mux=None, port=None, extra="", name="labrelay-server", fmt="ini"
):
    """Start a server on *port* (default: a free one); wait until it
    listens.  *fmt*: the config file's format (see :func:`in_format`)."""
    port = port or free_port()
    text, filename = in_format(server_ini(port, mux=mux, extra=extra), "frps.ini", fmt)
    path = write_config(testcase, filename, text)
    process = twistd(testcase, "labrelay-server", path, name=name)
    await process.wait_for(rf"starting on {port}$")
    return ServerProcess(process, port, path)


class ClientProcess:
    """A ``twistd labrelay-client`` process."""

    def __init__(self, process, config_path):
        self.process = process
        self.config_path = config_path

    @property
    def pid(self):
        return self.process.pid

    async def proxy_port(self, name, since=0, timeout=15):
        """Wait until proxy *name* is registered (after output position
        *since*); return its remote port."""
        match = await self.process.wait_for(
            rf"\[{re.escape(name)}\] start proxy success, remote address "
            rf"\S*:(\d+)$",
            since=since,
            timeout=timeout,
        )
        return int(match.group(1))


def start_client(
    testcase,
    server_port,
    proxies,
    mux=None,
    token=TOKEN,
    extra="",
    name="labrelay-client",
    fmt="ini",
):
    """Spawn a client; wait with :meth:`ClientProcess.proxy_port`.
    *fmt*: the config file's format (see :func:`in_format`)."""
    text, filename = in_format(
        client_ini(server_port, proxies, mux=mux, token=token, extra=extra),
        "frpc.ini",
        fmt,
    )
    path = write_config(testcase, filename, text)
    return ClientProcess(twistd(testcase, "labrelay-client", path, name=name), path)
