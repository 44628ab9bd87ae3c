"""Transaction-level model of the macro and the in-order score checker.

The model receives the commands in the order the command monitor saw them accepted and
predicts every score beat. Its state follows the interface contract of ``hdl.macro``: the stored
rows per slot (zero rows until written), the current sign vector and the sticky error flags.
The arithmetic is :mod:`golden.bitexact`.
"""

import struct
from collections import deque
from dataclasses import dataclass

import torch

from golden.bitexact import KeyRows, build_table, encode_keys, score_bits
from golden.numerics import FLOAT32_NAN

BAD_SLOT = 0b01
"""``error`` bit: a write named a slot outside ``0..T-1`` and was dropped."""
BAD_RANGE = 0b10
"""``error`` bit: a query named a first or last slot outside ``0..T-1``."""


@dataclass(frozen=True)
class Write:
    """Store ``data`` (``d`` raw 16-bit elements) as the key of ``slot``."""
    slot: int
    data: tuple


@dataclass(frozen=True)
class Query:
    """Score ``data`` against slots ``first .. last`` (wrapping modulo T)."""
    first: int
    last: int
    data: tuple


@dataclass(frozen=True)
class SignLoad:
    """Replace the sign vector; bit ``i`` of ``word`` set means ``s_i = -1``."""
    word: int


@dataclass(frozen=True)
class ScoreBeat:
    """One beat of the score stream; ``value`` is the binary32 bit pattern."""
    slot: int
    value: int
    last: int


def float32_text(bits):
    """Return ``0x........ (float)`` for a binary32 bit pattern."""
    value = struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]
    return f"0x{bits:08x} ({value!r})"


def signs_from_word(word, d):
    """Return the +1/-1 sign list for a sign word (bit ``i`` set means ``-1``)."""
    return [-1 if (word >> i) & 1 else 1 for i in range(d)]


def query_slots(first, last, context):
    """Return the slots a valid query scores, in output order: ``first .. last`` modulo T."""
    count = (last - first) % context + 1
    return [(first + i) % context for i in range(count)]


class GoldenArithmetic:
    """Key store and scoring of :mod:`golden.bitexact`, the bit-exact contract of the RTL."""

    def __init__(self, config):
        self.config = config
        self.dp = config.dp

    def new_store(self):
        """Return a store of ``T`` zero rows (codes 0, norm 0), the state of unwritten slots."""
        context, d = self.config.context, self.config.d
        zeros = torch.zeros(context, dtype=torch.int64)
        return KeyRows(codes=torch.zeros(context, d, dtype=torch.int64), norm=zeros.clone(),
                       exp=zeros.clone(), nan=torch.zeros(context, dtype=torch.bool))

    def write(self, store, slot, data, signs):
        """Encode the key ``data`` with ``signs`` into row ``slot`` of ``store``."""
        row = encode_keys(torch.tensor(data, dtype=torch.int64), self.dp, signs)
        store.codes[slot] = row.codes
        store.norm[slot] = row.norm
        store.exp[slot] = row.exp
        store.nan[slot] = row.nan

    def score(self, store, slots, data, signs):
        """Return the score bit patterns of query ``data`` against the rows of ``slots``."""
        table = build_table(torch.tensor(data, dtype=torch.int64), self.dp, signs)
        index = torch.tensor(slots, dtype=torch.int64)
        rows = KeyRows(codes=store.codes[index], norm=store.norm[index], exp=store.exp[index],
                       nan=store.nan[index])
        return score_bits(table, rows, self.dp).tolist()


class MacroModel:
    """State of one macro as the interface contract defines it.

    ``arithmetic`` provides ``new_store``, ``write`` and ``score``; the default is
    :class:`GoldenArithmetic`.
    """

    def __init__(self, config, arithmetic=None):
        self.config = config
        self.arithmetic = GoldenArithmetic(config) if arithmetic is None else arithmetic
        self.store = self.arithmetic.new_store()
        self.signs = list(config.signs)
        self.error = 0
        self.written = set()

    def reset(self):
        """Apply a reset: the sign register and error flags return to their initial state."""
        self.signs = list(self.config.signs)
        self.error = 0

    def error_of(self, command):
        """Return the error bits that ``command`` raises (known from its first beat)."""
        context = self.config.context
        if isinstance(command, Write) and command.slot >= context:
            return BAD_SLOT
        if isinstance(command, Query) and (command.first >= context or command.last >= context):
            return BAD_RANGE
        return 0

    def execute(self, command):
        """Apply one accepted command and return the score beats it must produce."""
        context = self.config.context
        self.error |= self.error_of(command)
        if isinstance(command, SignLoad):
            self.signs = signs_from_word(command.word, self.config.d)
            return []
        if isinstance(command, Write):
            if command.slot < context:
                self.arithmetic.write(self.store, command.slot, command.data, self.signs)
                self.written.add(command.slot)
            return []
        if not isinstance(command, Query):
            raise TypeError(f"command must be a Write, Query or SignLoad, not {command!r}")
        if command.first >= context or command.last >= context:
            return [ScoreBeat(slot=command.first, value=FLOAT32_NAN, last=1)]
        slots = query_slots(command.first, command.last, context)
        values = self.arithmetic.score(self.store, slots, command.data, self.signs)
        return [ScoreBeat(slot=s, value=v, last=int(i == len(slots) - 1))
                for i, (s, v) in enumerate(zip(slots, values))]


class ScoreMismatch(AssertionError):
    """The score stream differed from the model's prediction."""


@dataclass
class _Pending:
    beat: ScoreBeat
    query_number: int
    query: Query
    index: int
    count: int


class Scoreboard:
    """In-order checker of the score stream against the model's predictions.

    ``seed_text`` is appended to every mismatch report so that the run can be reproduced.
    """

    def __init__(self, seed_text=""):
        self.seed_text = seed_text
        self.pending = deque()
        self.compared = 0
        self.queries_checked = 0
        self.dropped = 0

    def expect(self, query_number, query, beats):
        """Queue the beats predicted for one query, in output order."""
        for index, beat in enumerate(beats):
            self.pending.append(_Pending(beat, query_number, query, index, len(beats)))

    def drop_pending(self):
        """Forget every predicted beat (after a reset clears the pipeline); return how many."""
        count = len(self.pending)
        self.dropped += count
        self.pending.clear()
        return count

    def compare(self, actual):
        """Check one received beat against the oldest prediction; raise :class:`ScoreMismatch`.

        Returns the query number of the beat.
        """
        if not self.pending:
            raise ScoreMismatch(
                f"unexpected score beat slot {actual.slot} value {float32_text(actual.value)} "
                f"last {actual.last}: no query is waiting for scores{self.seed_text}")
        item = self.pending.popleft()
        expected = item.beat
        if actual != expected:
            q = item.query
            problems = []
            if actual.slot != expected.slot:
                problems.append(f"slot expected {expected.slot} got {actual.slot}")
            if actual.value != expected.value:
                problems.append(f"value expected {float32_text(expected.value)} "
                                f"got {float32_text(actual.value)}")
            if actual.last != expected.last:
                problems.append(f"last expected {expected.last} got {actual.last}")
            raise ScoreMismatch(
                f"score mismatch at slot {expected.slot}, query #{item.query_number} "
                f"(first {q.first}, last {q.last}), beat {item.index + 1} of {item.count}: "
                + "; ".join(problems) + self.seed_text)
        self.compared += 1
        if expected.last:
            self.queries_checked += 1
        return item.query_number
