"""
Fuzz labrelay's decoders and the protocols that read hostile bytes.

Each target (the drivers, the corpus builders and the mutator are in
``tests/support/fuzz``, shared with the hypothesis tests in ``tests/unit``;
``admin`` is the client's admin API, ``routes`` the vhost route table
against a naive model) runs for ``--seconds`` on random inputs and on
mutations of a corpus of valid inputs built from the frp captures in
``tests/data`` and from valid requests and configs.  An input that gives an outcome not seen before joins the corpus,
so later mutations start from it.

A failure is an exception the target does not expect (anything but the
decoder's own error type, which the driver turns into an outcome), a
buffer or memory bound broken (``BoundExceeded``), or an error *logged* as
a failure while the input ran (a protocol callback that raised inside a
yamux stream, an unhandled error in a Deferred).  The first failing input
of each kind is saved under a temporary directory; the exit status is 1 if
any failure was found.

Usage, from the repository root::

    python3 -m tools.fuzz [--seconds N] [--target NAME ...] [--seed S]
    python3 -m tools.fuzz --replay FILE.json
"""

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import time
import traceback

from tests.support.fuzz.core import BoundExceeded, corpus_of, mutate, normalise
from tests.support.fuzz.targets import TARGETS

#: Failures of one kind after which a target stops saving inputs.
MAX_SAVED = 5
#: Growth of the process's peak RSS (bytes) that counts as a failure.
RSS_LIMIT = 512 * 1024 * 1024
#: Largest corpus a target grows to from new outcomes.
MAX_CORPUS = 2000


class LoggedFailures:
    """A Twisted log observer that keeps the failures logged."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        if event.get("log_failure") is not None:
            self.events.append(event)

    def take(self):
        events, self.events = self.events, []
        return events


def _random_input(rng):
    size = rng.randrange(1 << rng.randrange(13))
    return bytes(rng.getrandbits(8) for _ in range(size))


def _cuts(rng, data):
    return [rng.randrange(len(data) + 1) for _ in range(rng.randrange(9))]


def _peak_rss() -> int:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Run:
    """One target's fuzzing run and its figures."""

    def __init__(self, target, corpus, rng, save_dir, logged):
        self.target = target
        self.corpus = list(corpus)
        self.rng = rng
        self.save_dir = save_dir
        self.logged = logged
        self.tried = 0
        self.elapsed = 0.0
        self.outcomes = set()
        self.failures = {}  # kind -> count
        self.saved = []  # paths of saved inputs, first first

    def one(self, data, cuts):
        """Run one input; record its outcome or failure."""
        self.tried += 1
        error = None
        try:
            outcome = self.target.run(data, cuts)
        except BoundExceeded as e:
            error, detail = f"bound: {e}", traceback.format_exc()
        except Exception as e:  # what the fuzzer is here to find
            error = f"{type(e).__name__}: {str(e)[:200]}"
            detail = traceback.format_exc()
        gc.collect(0)  # unhandled Deferred errors are logged when collected
        logged = self.logged.take()
        if error is None and logged:
            failure = logged[0]["log_failure"]
            error = f"logged {failure.type.__name__}: {str(failure.value)[:200]}"
            detail = failure.getTraceback()
        if error is None:
            if outcome not in self.outcomes:
                self.outcomes.add(outcome)
                if len(self.corpus) < MAX_CORPUS and data:
                    self.corpus.append(data)
            return
        kind = normalise(error, 120)
        count = self.failures.get(kind, 0) + 1
        self.failures[kind] = count
        if count == 1 and len(self.saved) < MAX_SAVED:
            self.save(data, cuts, error, detail)

    def save(self, data, cuts, error, detail):
        stem = os.path.join(self.save_dir, f"{self.target.name}-{len(self.saved) + 1}")
        with open(stem + ".bin", "wb") as f:
            f.write(data)
        with open(stem + ".json", "w") as f:
            json.dump(
                {
                    "target": self.target.name,
                    "input": stem + ".bin",
                    "cuts": cuts,
                    "error": error,
                    "traceback": detail,
                },
                f,
                indent=1,
            )
        self.saved.append(stem + ".json")

    def fuzz(self, seconds):
        """Mutate and try inputs for *seconds* (the corpus first)."""
        start = time.monotonic()
        deadline = start + seconds
        rss_start = _peak_rss()
        for seed in list(self.corpus):
            self.one(seed, [])
        rng = self.rng
        while time.monotonic() < deadline:
            if rng.random() < 0.2 or not self.corpus:
                data = _random_input(rng)
            else:
                data = mutate(
                    rng.choice(self.corpus), rng, self.corpus, self.target.tokens
                )
            self.one(data, _cuts(rng, data))
            if self.tried % 500 == 0 and _peak_rss() - rss_start > RSS_LIMIT:
                self.failures["peak RSS grew by more than 512 MiB"] = 1
                break
        self.elapsed = time.monotonic() - start


def replay(path) -> int:
    """Run one saved input again and print what happens."""
    with open(path) as f:
        saved = json.load(f)
    with open(saved["input"], "rb") as f:
        data = f.read()
    target = TARGETS[saved["target"]]
    print(f"{target.name}: {len(data)} bytes, cuts {saved['cuts']}")
    try:
        print("outcome:", target.run(data, saved["cuts"]))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Fuzz labrelay's decoders (see tools/README.rst)."
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="seconds per target (default 10)"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        metavar="NAME",
        help="a target to run (repeatable; default all): " + ", ".join(TARGETS),
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (default: from the clock)"
    )
    parser.add_argument(
        "--replay", metavar="FILE.json", help="run one saved failing input again"
    )
    options = parser.parse_args(argv)

    from twisted.logger import globalLogBeginner

    logged = LoggedFailures()
    globalLogBeginner.beginLoggingTo(
        [logged], discardBuffer=True, redirectStandardIO=False
    )
    if options.replay:
        return replay(options.replay)

    seed = options.seed if options.seed is not None else int(time.time() * 1000) % 2**32
    save_dir = tempfile.mkdtemp(prefix="labrelay-fuzz-")
    names = options.target or list(TARGETS)
    print(
        f"seed {seed}, {options.seconds:g} s per target, "
        f"failing inputs under {save_dir}"
    )
    runs = []
    for name in names:
        target = TARGETS[name]
        run = Run(
            target, corpus_of(target), random.Random(f"{seed}:{name}"), save_dir, logged
        )
        run.fuzz(options.seconds)
        runs.append(run)

    header = (
        f"{'target':<14} {'inputs':>9} {'inputs/s':>9} "
        f"{'outcomes':>9} {'failures':>9}  first failing input"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        rate = run.tried / run.elapsed if run.elapsed else 0
        failures = sum(run.failures.values())
        first = run.saved[0] if run.saved else "-"
        print(
            f"{run.target.name:<14} {run.tried:>9} {rate:>9.0f} "
            f"{len(run.outcomes):>9} {failures:>9}  {first}"
        )
    failed = [run for run in runs if run.failures]
    for run in failed:
        print(f"\n{run.target.name}: {len(run.failures)} kind(s) of failure")
        for kind, count in sorted(run.failures.items()):
            print(f"  {count:>6} x {kind}")
        for path in run.saved:
            print(f"  saved: {path}")
    if not failed:
        os.rmdir(save_dir) if not os.listdir(save_dir) else None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
