"""
What every fuzz target shares: the :class:`Target` interface, the bound
check, the mutator, lenient memory transports and the hypothesis
strategy that draws inputs from a target's corpus.

A target is a *driver*: ``run(data, cuts)`` feeds ``data``, cut at
``cuts``, to one decoder or one protocol on memory transports, raises
:class:`BoundExceeded` when a buffer or memory bound is broken (any other
exception escaping is a bug too) and returns a short outcome label.  The
hypothesis tests in ``tests/unit`` and ``tools/fuzz.py`` share the
drivers, the corpus of valid inputs (built from the frp captures in
``tests/data``) and the mutator.
"""

import re

from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from labrelay.mux.frames import INITIAL_WINDOW
from labrelay.protocol.framing import MAX_BODY_LENGTH

#: The captures' token: their Login and NewWorkConn keys are valid with it.
TOKEN = "labrelay-vector-token"
#: The run_id every captured NewWorkConn is rewritten to, and the one the
#: server hands out while a driver runs.
RUN_ID = "f0f0f0f0f0f0f0f0"
#: Largest input the mutator builds.
MAX_INPUT = 64 * 1024


class BoundExceeded(AssertionError):
    """A buffer or memory bound was broken (a failure, like a crash)."""


def bound(condition: bool, what: str) -> None:
    """Raise :class:`BoundExceeded` saying *what* unless *condition*."""
    if not condition:
        raise BoundExceeded(what)


def chunked(data: bytes, cuts) -> list:
    """*data* cut at the positions *cuts* (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
#: input echoed in an error: template constructs, a (cut) value at the end
_ECHOED = re.compile(r"\{\{.*?(?:\}\}|$)|(?<=: )b?['\"\[{(].*$")


def normalise(text: str, width: int = 70) -> str:
    """The first line of *text* with quoted values and numbers blanked, so
    that alike errors count once."""
    text = _QUOTED.sub("_", text.split("\n")[0])
    text = _ECHOED.sub("_", text)
    return re.sub(r"0x[0-9a-fA-F]+|[0-9]+", "N", text)[:width]


def label(error: BaseException) -> str:
    """An outcome label for an expected error: its type and message."""
    return f"{type(error).__name__}: {normalise(str(error))}"


# -- mutation ----------------------------------------------------------------

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x22, 0x3A, 0x7B)
_INTEGERS = (
    0,
    1,
    0x7F,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0xFFFFFFFF,
    2**63 - 1,
    2**64 - 1,
    MAX_BODY_LENGTH,
    MAX_BODY_LENGTH + 1,
    INITIAL_WINDOW,
    INITIAL_WINDOW + 1,
)


def _random_bytes(rng, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def mutate(data: bytes, rng, corpus, tokens=()) -> bytes:
    """Apply one to four random edits (bit flips, interesting values,
    inserts, deletes, repeats, splices with another corpus entry, dictionary
    tokens) to *data*; *rng* is a ``random.Random`` or a hypothesis one."""
    out = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(10)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[rng.randrange(len(out))] = rng.choice(_INTERESTING)
        elif op == 2:
            out[pos:pos] = _random_bytes(rng, 1 + rng.randrange(16))
        elif op == 3 and out:
            end = min(len(out), pos + 1 + rng.randrange(64))
            del out[pos:end]
        elif op == 4 and out:
            start = rng.randrange(len(out))
            piece = out[start : start + 1 + rng.randrange(256)]
            out[pos:pos] = piece
        elif op == 5 and out:
            start = rng.randrange(len(out))
            piece = bytes(out[start : start + 1 + rng.randrange(48)])
            count = 2 + rng.randrange(1000)
            out[pos:pos] = piece * min(count, MAX_INPUT // len(piece))
        elif op == 6 and corpus:
            other = rng.choice(corpus)
            out = out[:pos] + other[rng.randrange(len(other) + 1) :]
        elif op == 7:
            del out[pos:]
        elif op == 8 and out:
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(_INTEGERS) & ((1 << (8 * width)) - 1)
            at = rng.randrange(len(out))
            out[at : at + width] = value.to_bytes(width, "big")
        elif op == 9 and tokens:
            # a dictionary token, now and then repeated (floods)
            count = 1 if rng.randrange(4) else 1 + rng.randrange(500)
            token = rng.choice(tokens)
            out[pos:pos] = token * min(count, MAX_INPUT // len(token))
    return bytes(out[:MAX_INPUT])


# -- memory transports -------------------------------------------------------


class Wire(StringTransport):
    """
    A lenient StringTransport (a real TCP transport also accepts pause and
    resume after a close) that records an abort and a shut write half, and
    can model a peer that stops reading: after *pause_after* written bytes
    it pauses its registered producer and counts what is written anyway.
    """

    def __init__(self, port: int = 40000, pause_after=None):
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7000),
            peerAddress=IPv4Address("TCP", "203.0.113.7", port),
            lenient=True,
        )
        self.aborted = False
        self.write_closed = False
        self.lost = False
        self._pause_after = pause_after
        self.written = 0
        self.written_while_paused = None

    def write(self, data):
        super().write(data)
        self._wrote(len(data))

    def writeSequence(self, seq):
        data = b"".join(seq)
        super().write(data)
        self._wrote(len(data))

    def _wrote(self, n: int) -> None:
        self.written += n
        if self.written_while_paused is not None:
            self.written_while_paused += n
        elif (
            self._pause_after is not None
            and self.written > self._pause_after
            and self.producer is not None
        ):
            self.written_while_paused = 0
            self.producer.pauseProducing()

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()

    def loseWriteConnection(self):
        self.write_closed = True

    @property
    def reading(self) -> bool:
        """Whether a reactor would still deliver the peer's bytes: not after
        an abort or a full close (``loseConnection`` stops reading), nor
        while the protocol paused this transport."""
        return (
            not self.aborted
            and not self.disconnecting
            and self.producerState != "paused"
        )


def lose(protocol, wire: Wire) -> None:
    """What a reactor does once a transport is gone: ``connectionLost``."""
    if not wire.lost:
        wire.lost = True
        protocol.connectionLost(Failure(ConnectionDone()))


# -- the targets -------------------------------------------------------------


class Target:
    """One decoder under test: a name, a corpus, tokens and a driver."""

    name = ""
    tokens = ()

    def corpus(self) -> list:
        """Valid inputs to mutate (built once, from tests/data)."""
        raise NotImplementedError

    def run(self, data: bytes, cuts) -> str:
        """Feed *data* cut at *cuts*; return an outcome label."""
        raise NotImplementedError


# -- hypothesis --------------------------------------------------------------

_CORPORA = {}


def corpus_of(target: Target) -> list:
    """The target's corpus, built once."""
    if target.name not in _CORPORA:
        _CORPORA[target.name] = target.corpus()
    return _CORPORA[target.name]


def inputs(target: Target, max_random: int = 2000):
    """(data, cuts): random bytes, or a corpus entry mutated."""
    corpus = corpus_of(target)
    mutated = st.builds(
        lambda seed, rng: mutate(seed, rng, corpus, target.tokens),
        st.sampled_from(corpus),
        st.randoms(use_true_random=False),
    )
    data = st.one_of(st.binary(max_size=max_random), st.sampled_from(corpus), mutated)
    return st.tuples(data, st.lists(st.integers(0, MAX_INPUT), max_size=8))
