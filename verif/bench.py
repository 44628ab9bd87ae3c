"""cocotb testbench of the macro: clock, reset, stream drivers, monitors, model and scoreboard.

One :class:`Bench` drives the macro's ports from a single clocked loop. The command monitor
feeds the model with the commands in the order the macro accepted them, the model predicts the
score beats and the scoreboard compares every beat received, in order. The error flags are
checked on every cycle against what the accepted commands allow.

The macro keeps its stored rows across cocotb tests (a reset does not clear them), so the model
of the rows lives in the test module's process and passes from one test to the next. A test
that ends without draining the macro cleanly marks that state as unknown, and the next test
rewrites every slot before it starts.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly, Timer

from .configs import config_from_env
from .model import BAD_RANGE, BAD_SLOT, MacroModel, Query, Scoreboard, Write
from .vectors import gaussian_vectors
from .streams import (CommandMonitor, PayloadFormat, ScoreSink, StreamProtocolError,
                      StreamSource)

CLOCK_PERIOD_NS = 10

PROGRESS_SECONDS = 60
"""Wall-clock interval of the progress line a long test logs (cycles, commands, scores)."""

SCORE_LOG_ENV = "AXELRAM_SCORE_LOG"
"""Environment variable naming a file to which each test appends its count of compared scores."""

EFFORT_ENV = "AXELRAM_TB_EFFORT"
"""Environment variable scaling the number of commands per test (default 1)."""

# The error output read as a bit string, MSB first; anything else has an X or Z bit.
_ERROR_VALUES = {"00": 0, "01": 1, "10": 2, "11": 3}

_shared = {"model": None, "trusted": False, "regression_seed": None}


def regression_seed():
    """Return the seed that reproduces this simulator run (``COCOTB_RANDOM_SEED``)."""
    if _shared["regression_seed"] is None:
        _shared["regression_seed"] = int(os.environ.get("COCOTB_RANDOM_SEED", cocotb.RANDOM_SEED))
    return _shared["regression_seed"]


def effort():
    """Return the workload multiplier from ``AXELRAM_TB_EFFORT``."""
    text = os.environ.get(EFFORT_ENV, "1")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{EFFORT_ENV} must be a positive number, not {text!r}") from None
    if not value > 0:
        raise ValueError(f"{EFFORT_ENV} must be a positive number, not {text!r}")
    return value


class BenchTimeout(AssertionError):
    """The macro stopped making progress while the testbench waited for it."""


class Bench:
    """Testbench around the macro ``dut``.

    ``config`` defaults to the configuration passed by the pytest runner and ``arithmetic`` to
    the bit-exact golden model (see :class:`verif.model.MacroModel`). ``test_name`` labels the
    score count written at :meth:`finish`.
    """

    def __init__(self, dut, config=None, *, arithmetic=None, test_name="test"):
        self.dut = dut
        self.config = config_from_env() if config is None else config
        self.test_name = test_name
        self.seed = cocotb.RANDOM_SEED
        self.log = dut._log.getChild("bench") if hasattr(dut, "_log") else cocotb.log
        self.rng = random.Random(self.seed)
        self.x_fill = "verilator" not in cocotb.SIM_NAME.lower()
        self.fmt = fmt = PayloadFormat(self.config)
        if _shared["model"] is None or _shared["model"].config != self.config:
            _shared["model"] = MacroModel(self.config, arithmetic)
            _shared["trusted"] = True
        self.model = _shared["model"]
        self.restore_needed = not _shared["trusted"]
        _shared["trusted"] = False

        seed_text = (f" [reproduce with COCOTB_RANDOM_SEED={regression_seed()}; "
                     f"test seed {self.seed}]")
        self.seed_text = seed_text
        self.scoreboard = Scoreboard(seed_text)
        self.write_source = StreamSource(dut, "write", fmt.write_width, self._child_rng(),
                                         x_fill=self.x_fill)
        self.query_source = StreamSource(dut, "query", fmt.query_width, self._child_rng(),
                                         x_fill=self.x_fill)
        self.sources = [self.write_source, self.query_source]
        self.sign_source = None
        if self.config.runtime_signs:
            self.sign_source = StreamSource(dut, "signs", self.config.d, self._child_rng(),
                                            x_fill=self.x_fill)
            self.sources.append(self.sign_source)
        self.sink = ScoreSink(dut, fmt, self._child_rng(), self._on_score)
        self.monitor = CommandMonitor(dut, fmt, self._on_command, self._on_start,
                                      runtime_signs=self.config.runtime_signs)
        if len(dut.error) != 2:
            raise ValueError(f"error is {len(dut.error)} bits wide, the interface contract gives 2")

        self.cycle = 0
        self.failure = None
        self.query_count = 0
        self.commands = 0
        self.writes_accepted = 0
        self.writes_confirmed = 0
        self._writes_before = {}
        self.stall_limit = 20000 + 64 * self.config.d
        self._pending_error = 0
        self._last_error = 0
        self._reset_cycles = 0
        self._progress_cycle = 0
        self._progress_marks = (0, 0)
        self._task = None
        self._waiters = []
        self._report_at = time.monotonic() + PROGRESS_SECONDS
        self._report_cycle = 0

    def _child_rng(self):
        return random.Random(self.rng.getrandbits(64))

    # -- setup and teardown ---------------------------------------------------------------

    async def start(self):
        """Start the clock and the cycle loop, reset the macro and restore a known state."""
        dut = self.dut
        self.log.info("configuration %r, signs %s, slot width %d, %d beat(s) per vector, "
                      "payload widths write %d query %d score %d; %s",
                      self.config, self.config.sign_source, self.fmt.slot_width, self.fmt.beats,
                      self.fmt.write_width, self.fmt.query_width, self.fmt.score_width,
                      "idle payloads are X" if self.x_fill else "idle payloads are random bits")
        self.log.info("random seed %d%s", self.seed, self.seed_text)
        # The previous test may have ended in a read-only phase, where no signal may be written.
        await Timer(1, unit="ns")
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
        dut.rst.value = 1
        for source in self.sources:
            source.valid.value = 0
        dut.score__ready.value = 0
        self._task = cocotb.start_soon(self._cycle_loop())
        await self.reset(cycles=4, check=False)
        if self.restore_needed:
            self.log.info("previous test left the stored rows unknown: rewriting all %d slots",
                          self.config.context)
            keys = gaussian_vectors(self.rng, self.config, self.config.context)
            for slot, key in enumerate(keys):
                self.write(slot, key)
            await self.drain()

    def finish(self):
        """Record the number of compared scores; mark the model state as trustworthy."""
        _shared["trusted"] = self.failure is None
        self.log.info("%d scores compared bit-exactly over %d queries; %d commands; %d cycles",
                      self.scoreboard.compared, self.scoreboard.queries_checked, self.commands,
                      self.cycle)

    def record_count(self):
        """Append this test's count of compared scores to the file named by ``AXELRAM_SCORE_LOG``."""
        path = os.environ.get(SCORE_LOG_ENV)
        if not path:
            return
        entry = {"sim": cocotb.SIM_NAME, "config": self.config.name,
                 "context": self.config.context, "test": self.test_name,
                 "scores": self.scoreboard.compared, "queries": self.scoreboard.queries_checked}
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    # -- the clocked loop -----------------------------------------------------------------

    async def _cycle_loop(self):
        clk = self.dut.clk
        while True:
            await FallingEdge(clk)
            in_reset = self._reset_cycles > 0
            if in_reset:
                self._reset_cycles -= 1
                self.dut.rst.value = 1
                for source in self.sources:
                    source.flush()
                self.sink.enabled = False
            else:
                self.dut.rst.value = 0
            for source in self.sources:
                source.drive()
            self.sink.drive()
            await ReadOnly()
            self.cycle += 1
            if self.failure is None:
                try:
                    if in_reset:
                        self._apply_reset()
                    else:
                        self._sample()
                except AssertionError as exc:
                    self.failure = exc
                    self.log.error("cycle %d: %s", self.cycle, exc)
            self._wake_waiters()
            if self.cycle % 64 == 0 and time.monotonic() >= self._report_at:
                self._report_progress()

    def _report_progress(self):
        now = time.monotonic()
        rate = (self.cycle - self._report_cycle) / (now - self._report_at + PROGRESS_SECONDS)
        self.log.info("progress: cycle %d (%.0f cycles/s), %d commands accepted, %d scores "
                      "compared", self.cycle, rate, self.commands, self.scoreboard.compared)
        self._report_at = now + PROGRESS_SECONDS
        self._report_cycle = self.cycle

    def _sample(self):
        fired = self.monitor.sample()
        for source in self.sources:
            if source.current is not None and source.name in fired:
                source.accepted()
        self.sink.sample()
        self._check_error_flags()
        self._note_progress()

    def _wake_waiters(self):
        # Waiting scenarios are woken here, once, instead of polling on every clock edge.
        remaining = []
        for condition, event, since in self._waiters:
            stalled = self.cycle - max(self._progress_cycle, since) > self.stall_limit
            if self.failure is not None or stalled or condition():
                event.set()
            else:
                remaining.append((condition, event, since))
        self._waiters = remaining

    def _apply_reset(self):
        # The rising edge after this phase resets the macro: the pipeline empties, the sign
        # register and the error flags return to their initial values, the rows stay.
        self.model.reset()
        dropped = self.scoreboard.drop_pending()
        if dropped:
            self.log.info("reset dropped %d predicted score beats", dropped)
        self.monitor.forget()
        self.sink.forget_offer()
        self._pending_error = 0
        self._last_error = 0
        self._progress_cycle = self.cycle
        self._writes_before.clear()

    def _note_progress(self):
        marks = (self.monitor.accepted_beats, self.sink.accepted)
        if marks != self._progress_marks:
            self._progress_marks = marks
            self._progress_cycle = self.cycle

    def _check_error_flags(self):
        text = str(self.dut.error.value)
        actual = _ERROR_VALUES.get(text)
        if actual is None:
            raise StreamProtocolError(f"error output is {text} (not 0 or 1) outside reset")
        allowed = self.model.error | self._pending_error
        if actual & ~allowed:
            raise StreamProtocolError(
                f"error = {actual:#04b} but the commands accepted so far allow only "
                f"{allowed:#04b} (bit 0 bad_slot, bit 1 bad_range){self.seed_text}")
        if self._last_error & ~actual:
            raise StreamProtocolError(
                f"error fell from {self._last_error:#04b} to {actual:#04b} without a reset")
        self._last_error = actual

    # -- monitor callbacks ------------------------------------------------------------------

    def _on_start(self, kind, word):
        if kind == "write":
            command = self.fmt.parse_write([word] * self.fmt.beats)
        else:
            command = self.fmt.parse_query([word] * self.fmt.beats)
        self._pending_error |= self.model.error_of(command)

    def _on_command(self, command):
        self.commands += 1
        beats = self.model.execute(command)
        self._pending_error = 0
        if isinstance(command, Write):
            self.writes_accepted += 1
            self.log.debug("cycle %d: write slot %d", self.cycle, command.slot)
        elif isinstance(command, Query):
            self.query_count += 1
            if not self.model.error_of(command):
                self._writes_before[self.query_count] = self.writes_accepted
            self.scoreboard.expect(self.query_count, command, beats)
            self.log.debug("cycle %d: query #%d first %d last %d: %d beats", self.cycle,
                           self.query_count, command.first, command.last, len(beats))
        else:
            self.log.debug("cycle %d: signs %#x", self.cycle, command.word)

    def _on_score(self, beat):
        number = self.scoreboard.compare(beat)
        # A valid query reads the rows only after every earlier write is stored, so its first
        # score confirms those writes (an out-of-range query reads no rows).
        before = self._writes_before.pop(number, None)
        if before is not None:
            self.writes_confirmed = max(self.writes_confirmed, before)

    @property
    def unconfirmed_writes(self):
        """Accepted writes that no score has yet shown to be stored."""
        return self.writes_accepted - self.writes_confirmed

    # -- stimulus -----------------------------------------------------------------------------

    def write(self, slot, data):
        """Queue a write of key ``data`` (``d`` raw 16-bit elements) to ``slot``."""
        self.write_source.send(self.fmt.write_beats(Write(slot, tuple(data)), self.rng))

    def query(self, first, last, data):
        """Queue a query of ``data`` against slots ``first .. last``."""
        self.query_source.send(self.fmt.query_beats(Query(first, last, tuple(data)), self.rng))

    def load_signs(self, signs):
        """Queue a sign-vector load (a list of +1/-1); needs a runtime-sign macro."""
        if self.sign_source is None:
            raise RuntimeError(f"{self.config.name} has no sign stream (runtime_signs is False)")
        word = sum(1 << i for i, s in enumerate(signs) if s < 0)
        self.sign_source.send([word])

    def set_traffic(self, *, idle=0.0, ready=1.0, burst=0.0):
        """Set the idle probability of the input drivers and the score back-pressure."""
        for name, value in (("idle", idle), ("ready", ready), ("burst", burst)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in 0..1, not {value!r}")
        if ready == 0.0:
            raise ValueError("ready must be above 0, or no score beat is ever accepted")
        for source in self.sources:
            source.idle_probability = idle
        self.sink.ready_probability = ready
        self.sink.burst = burst

    # -- waiting ------------------------------------------------------------------------------

    def _raise_failure(self):
        if self.failure is not None:
            raise self.failure

    def state_text(self):
        """Return a one-line summary of what is outstanding (for timeout messages)."""
        return (f"write beats queued {len(self.write_source.queue)}"
                f"{' +1 on the bus' if self.write_source.current is not None else ''}, "
                f"query beats queued {len(self.query_source.queue)}"
                f"{' +1 on the bus' if self.query_source.current is not None else ''}, "
                f"command in flight {self.monitor.in_flight}, "
                f"score beats awaited {len(self.scoreboard.pending)}")

    async def wait_until(self, condition, what):
        """Wait until ``condition()`` holds; raise :class:`BenchTimeout` if the macro stalls.

        The condition is evaluated once per clock cycle, after the handshakes of the cycle are
        recorded.
        """
        self._raise_failure()
        if condition():
            return
        event = Event()
        self._waiters.append((condition, event, self.cycle))
        await event.wait()
        self._raise_failure()
        if not condition():
            raise BenchTimeout(
                f"timed out waiting for {what}: no handshake for {self.stall_limit} cycles "
                f"(cycle {self.cycle}); {self.state_text()}{self.seed_text}")

    async def wait_cycles(self, count):
        """Let ``count`` clock cycles pass."""
        target = self.cycle + count
        await self.wait_until(lambda: self.cycle >= target, f"{count} cycles")

    def idle(self):
        """Return True when every queued command is accepted and every predicted score received."""
        return (not any(source.busy for source in self.sources)
                and self.monitor.in_flight is None and not self.scoreboard.pending)

    async def drain(self, quiet_cycles=32):
        """Wait until the macro is idle and every write is stored; check that no beat follows.

        An accepted write may still be inside the macro's pipeline when all streams are quiet,
        and a reset would drop it. So if a write was accepted after the last query, a one-slot
        query follows it: its score proves the write is stored. Afterwards the error flags must
        equal the model's.
        """
        await self.wait_until(self.idle, "all commands and score beats")
        if self.unconfirmed_writes:
            slot = self.rng.randrange(self.config.context)
            self.query(slot, slot, gaussian_vectors(self.rng, self.config, 1)[0])
            await self.wait_until(self.idle, "the query that confirms the last writes")
        await self.wait_cycles(quiet_cycles)
        self._raise_failure()
        if self.scoreboard.pending or not self.idle():
            raise StreamProtocolError(f"traffic after drain: {self.state_text()}")
        actual = self.dut.error.value.to_unsigned()
        if actual != self.model.error:
            names = []
            if (actual ^ self.model.error) & BAD_SLOT:
                names.append("bad_slot")
            if (actual ^ self.model.error) & BAD_RANGE:
                names.append("bad_range")
            raise StreamProtocolError(
                f"error = {actual:#04b} after draining, expected {self.model.error:#04b} "
                f"({', '.join(names)} differ){self.seed_text}")

    async def reset(self, cycles=2, *, check=True):
        """Hold ``rst`` high for ``cycles`` cycles, then check that the macro comes back clean.

        Queued beats are dropped and predicted beats forgotten. Every accepted write must be
        confirmed by a later query first (:meth:`drain` does that): a write still inside the
        pipeline may or may not reach its slot, and the model could not tell which.
        """
        if self.unconfirmed_writes:
            raise RuntimeError(f"reset() with {self.unconfirmed_writes} writes not yet confirmed "
                               f"by a query: the model cannot tell whether they reach their slots")
        self._reset_cycles = cycles
        await self.wait_until(lambda: self._reset_cycles == 0, "reset")
        await self.wait_cycles(1)
        self.sink.enabled = True
        if check:
            actual = self.dut.error.value.to_unsigned()
            if actual:
                raise StreamProtocolError(f"error = {actual:#04b} after reset, expected 0")
