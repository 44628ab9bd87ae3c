"""cocotb tests of the UART board demo: the host client talks to the bridge over a UART model.

This module runs inside the simulator; ``verif/test_uart.py`` builds
:class:`fpga.uart_top.UARTBridge` and starts it. The macro configuration comes from
``AXELRAM_TB_CONFIG`` and the bridge parameters from ``AXELRAM_TB_UART``.

The host side is the real client, :class:`fpga.host.Board`, running in a cocotb bridge thread.
Its transport turns every ``write`` into 8N1 bit timing on the bridge's ``rx`` pin and every
``read`` into bytes a :class:`SerialLine` received from the ``tx`` pin, so the simulation runs
the client's framing, checks and error handling unchanged. Expected scores come from
:class:`verif.model.MacroModel`, whose arithmetic is ``golden.bitexact``.
"""

import json
import os
import random
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, Timer

from fpga.host import Board
from fpga.protocol import (PROTOCOL_VERSION, BoardError, Command, ErrorCode, ErrorFlag,
                           Identity, Reply, encode_frame, query_payload_bytes,
                           write_record_bytes)
from fpga.uart import baud_divisor

from .bench import SCORE_LOG_ENV, effort
from .configs import config_from_env
from .model import MacroModel, Query, SignLoad, Write, float32_text
from .scenarios import REAL_KV_ENV
from .vectors import SPECIAL, gaussian_vectors

UART_ENV = "AXELRAM_TB_UART"
"""Environment variable carrying the bridge parameters (``UARTBridge`` keyword arguments) as JSON."""

# Read only inside the simulator, so that the runner can import UART_ENV from here.
CONFIG = config_from_env() if cocotb.is_simulation else None
BRIDGE = json.loads(os.environ[UART_ENV]) if cocotb.is_simulation else None

HOST_BUFFER_BYTES = 16
"""Receive buffer of the host model, small so that a stalled reader fills it within one reply."""

_shared = {"model": None, "trusted": True}
"""The model of the macro's stored rows, shared by the tests of one simulator run because the
rows survive a reset. ``trusted`` is false while a test runs and stays false if it fails, so
that the next test rewrites every slot before it compares scores."""


def macro_model():
    """Return the shared :class:`verif.model.MacroModel`."""
    if _shared["model"] is None:
        _shared["model"] = MacroModel(CONFIG)
    return _shared["model"]


class SerialLine:
    """Host end of the serial line: an 8N1 UART on the bridge's ``rx``, ``tx`` and ``cts_n``.

    Received bytes wait in a buffer of ``capacity`` bytes, as in a USB UART chip. RTS# (the
    bridge's ``cts_n``) goes high while the buffer contains ``capacity - RTS_MARGIN`` bytes or
    more. A byte that arrives while the buffer is full is lost and counted in ``lost``.
    """
    RTS_MARGIN = 2
    """Room left when RTS# goes high: the byte the bridge may have started, and one spare."""

    def __init__(self, dut, bit_ns, capacity):
        self.dut = dut
        self.bit_ns = bit_ns
        self.capacity = capacity
        self.buffer = deque()
        self.lost = 0
        self.framing_errors = 0
        self.rts_raised = 0
        self.max_level = 0
        self.arrived = Event()
        self._pending = deque()
        self._wake = Event()
        self._rts_high = False
        dut.rx.value = 1
        dut.cts_n.value = 0
        cocotb.start_soon(self._transmit())
        cocotb.start_soon(self._receive())

    def send(self, data):
        """Queue ``data`` for sending as 8N1 characters, back to back."""
        for byte in data:
            self._pending.append([0] + [(byte >> i) & 1 for i in range(8)] + [1])
        self._wake.set()

    def send_levels(self, levels):
        """Queue raw line levels, one per bit period (to send a character without stop bit)."""
        self._pending.append(list(levels))
        self._wake.set()

    def take(self, count):
        """Remove and return up to ``count`` bytes from the receive buffer."""
        data = bytes(self.buffer.popleft() for _ in range(min(count, len(self.buffer))))
        self._update_rts()
        return data

    def _update_rts(self):
        high = len(self.buffer) >= self.capacity - self.RTS_MARGIN
        if high and not self._rts_high:
            self.rts_raised += 1
        self._rts_high = high
        self.dut.cts_n.value = int(high)

    async def _transmit(self):
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            for level in self._pending.popleft():
                self.dut.rx.value = level
                await Timer(self.bit_ns, unit="ns")
            self.dut.rx.value = 1

    async def _receive(self):
        tx = self.dut.tx
        while True:
            await FallingEdge(tx)
            await Timer(self.bit_ns / 2, unit="ns")
            if int(tx.value) != 0:
                self.framing_errors += 1
                continue
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                value |= int(tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            if int(tx.value) != 1:
                self.framing_errors += 1
                continue
            if len(self.buffer) >= self.capacity:
                self.lost += 1
            else:
                self.buffer.append(value)
            self.max_level = max(self.max_level, len(self.buffer))
            self._update_rts()
            self.arrived.set()


class LineTransport:
    """The ``read``/``write`` transport of :class:`fpga.host.Board` over a :class:`SerialLine`.

    Both methods block the client's thread while the simulation runs. ``read`` returns fewer
    bytes than asked only after ``timeout_ns`` of simulated time without a new byte. Setting
    ``stall_ns`` makes the next ``read`` wait that long before it looks at the buffer, like a
    host that does not read.
    """
    def __init__(self, line, timeout_ns):
        self.line = line
        self.timeout_ns = timeout_ns
        self.stall_ns = 0
        self.read = resume(self._read)
        self.write = resume(self._write)

    async def _write(self, data):
        self.line.send(bytes(data))
        return len(data)

    async def _read(self, count):
        if self.stall_ns:
            stall_ns, self.stall_ns = self.stall_ns, 0
            await Timer(stall_ns, unit="ns")
        # A blocked reader takes bytes as they arrive, as the operating system does for it, so
        # a read longer than the line's buffer still completes.
        data = bytearray(self.line.take(count))
        while len(data) < count:
            self.line.arrived.clear()
            timeout = Timer(self.timeout_ns, unit="ns")
            if await First(self.line.arrived.wait(), timeout) is timeout:
                break
            data += self.line.take(count - len(data))
        return bytes(data)


class UartBench:
    """Clock, reset, serial line and client around the bridge ``dut``."""

    def __init__(self, dut, test_name):
        self.dut = dut
        self.test_name = test_name
        self.log = dut._log.getChild("uart")
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.clk_hz = BRIDGE["clk_hz"]
        self.period_ns = 1e9 / self.clk_hz
        self.divisor = baud_divisor(self.clk_hz, BRIDGE["baud"])
        self.bit_ns = self.divisor * self.period_ns
        self.byte_ns = 10 * self.bit_ns
        self.model = macro_model()
        self.compared = 0
        self.queries = 0

    async def start(self):
        """Start the clock, reset the bridge and connect the client."""
        dut = self.dut
        self.log.info("configuration %r; bridge %s; divisor %d; seed %d", CONFIG, BRIDGE,
                      self.divisor, cocotb.RANDOM_SEED)
        Clock(dut.clk, self.period_ns, unit="ns").start()
        self.line = SerialLine(dut, self.bit_ns, HOST_BUFFER_BYTES)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 4)
        self.model.reset()
        # Long enough for a query's table build and the largest reply.
        self.transport = LineTransport(self.line, timeout_ns=2000 * self.byte_ns)
        self.board = Board(self.transport)
        if not _shared["trusted"]:
            self.log.info("an earlier test failed: rewriting all %d slots", CONFIG.context)
            await self.fill_all_slots()
        _shared["trusted"] = False

    async def call(self, function, *args):
        """Run a blocking client call in a bridge thread and return its result."""
        return await bridge(function)(*args)

    async def write_keys(self, slots, keys):
        """Write keys through the client and into the model."""
        count = await self.call(self.board.write_keys, list(slots),
                                np.array(keys, dtype=np.uint16))
        assert count == len(slots), f"write_keys returned {count} for {len(slots)} keys"
        for slot, key in zip(slots, keys):
            self.model.execute(Write(slot, tuple(key)))

    async def load_signs(self, signs):
        await self.call(self.board.load_signs, signs)
        word = sum(1 << i for i, sign in enumerate(signs) if sign == -1)
        self.model.execute(SignLoad(word))

    async def check_query(self, query, first, last, *, stall_ns=0):
        """Score ``query`` through the client and compare every score bit for bit."""
        expected = [beat.value for beat in self.model.execute(Query(first, last, tuple(query)))]
        self.transport.stall_ns = stall_ns
        got = await self.call(self.board.score_bits, np.array(query, dtype=np.uint16), first,
                              last)
        assert len(got) == len(expected), (
            f"query {first}..{last}: {len(got)} scores, expected {len(expected)}")
        for offset, (actual, wanted) in enumerate(zip(got.tolist(), expected)):
            slot = (first + offset) % CONFIG.context
            assert actual == wanted, (
                f"score mismatch at slot {slot} of query {first}..{last}: expected "
                f"{float32_text(wanted)}, got {float32_text(actual)} (seed {cocotb.RANDOM_SEED})")
        self.compared += len(expected)
        self.queries += 1

    async def fill_all_slots(self):
        """Write a fresh key into every slot, in one WRITE_KEY batch per buffer-full."""
        keys = vectors(self.rng, CONFIG.context)
        await self.write_keys(range(CONFIG.context), keys)

    async def expect_error(self, frame, code, command):
        """Send raw ``frame`` bytes and check that the board replies with ERROR ``code``."""
        await self.call(self.transport.write, frame)
        try:
            await self.call(self.board.receive, Reply.ERROR, command)
        except BoardError as exc:
            assert (exc.code, exc.command) == (code, command), (
                f"expected error {ErrorCode(code).name} for command 0x{command:02x}, "
                f"got {exc}")
        else:
            raise AssertionError(f"the board accepted a frame it must reject with "
                                 f"{ErrorCode(code).name}")

    def finish(self):
        """Check the line and append this test's score count to the regression's log."""
        assert self.line.lost == 0, f"{self.line.lost} bytes from the board were lost"
        assert self.line.framing_errors == 0, (
            f"{self.line.framing_errors} characters from the board had a bad start or stop bit")
        _shared["trusted"] = True
        self.log.info("%d scores compared bit-exactly over %d queries", self.compared,
                      self.queries)
        path = os.environ.get(SCORE_LOG_ENV)
        if path:
            entry = {"sim": cocotb.SIM_NAME, "config": CONFIG.name, "context": CONFIG.context,
                     "test": f"uart.{self.test_name}", "scores": self.compared,
                     "queries": self.queries}
            with open(path, "a") as file:
                file.write(json.dumps(entry) + "\n")


def vectors(rng, count):
    """Return ``count`` vectors: captured LLM keys when the fixture is given, else Gaussian."""
    path = os.environ.get(REAL_KV_ENV)
    if path:
        with np.load(path) as data:
            keys = data["keys"]
        if keys.dtype == np.float16 and keys.ndim == 2 and keys.shape[1] >= CONFIG.d:
            # The first d coordinates of the captured heads keep their uneven channel scales.
            rows = [rng.randrange(len(keys)) for _ in range(count)]
            return [tuple(int(v) for v in keys[row, :CONFIG.d].view(np.uint16)) for row in rows]
    return gaussian_vectors(rng, CONFIG, count)


def expected_identity():
    """The IDENTIFY fields the bridge must report, from the configuration the runner passed."""
    return Identity(version=PROTOCOL_VERSION, d=CONFIG.d, bits=CONFIG.bits,
                    context=CONFIG.context, input_format=CONFIG.input_format,
                    runtime_signs=CONFIG.runtime_signs, max_payload=BRIDGE["buffer_bytes"],
                    scores_per_frame=BRIDGE["scores_per_frame"])


@cocotb.test()
async def identify(dut):
    """IDENTIFY reports the macro's parameters; READ_ERRORS is clear after reset."""
    tb = UartBench(dut, "identify")
    await tb.start()
    identity = await tb.call(tb.board.identify)
    assert identity == expected_identity(), f"IDENTIFY returned {identity}"
    flags = await tb.call(tb.board.read_errors)
    assert flags == ErrorFlag.NONE, f"error flags {flags!r} after reset"
    tb.finish()


@cocotb.test()
async def write_and_score(dut):
    """Keys written in batches and one by one, scored by full and wrapping queries."""
    tb = UartBench(dut, "write_and_score")
    await tb.start()
    context = CONFIG.context
    # Infinities and NaNs in a key give NaN scores for that slot only.
    special = SPECIAL[CONFIG.input_format]
    keys = vectors(tb.rng, context)
    keys[1] = (special["infinity"],) + (special["one"],) * (CONFIG.d - 1)
    keys[-1] = (special["quiet_nan"],) * CONFIG.d
    await tb.write_keys(range(context), keys)
    await tb.check_query(vectors(tb.rng, 1)[0], 0, context - 1)
    await tb.check_query(vectors(tb.rng, 1)[0], context - 1, context // 2)

    # At full effort: single keys, each in its own frame, and random ranges.
    rounds = round(2 * effort())
    for slot in tb.rng.sample(range(context), min(rounds, context)):
        await tb.write_keys([slot], vectors(tb.rng, 1))
    for _ in range(rounds):
        await tb.check_query(vectors(tb.rng, 1)[0], tb.rng.randrange(context),
                             tb.rng.randrange(context))

    if CONFIG.runtime_signs:
        # Rows written before the load keep the codes of the old signs.
        signs = [tb.rng.choice((1, -1)) for _ in range(CONFIG.d)]
        await tb.load_signs(signs)
        await tb.write_keys([0, context - 1], vectors(tb.rng, 2))
        await tb.check_query(vectors(tb.rng, 1)[0], 0, context - 1)

    flags = await tb.call(tb.board.read_errors)
    assert flags == ErrorFlag.NONE, f"error flags {flags!r} after valid traffic"
    tb.finish()


@cocotb.test()
async def malformed_frames(dut):
    """Corrupt, unknown, wrong-length and cut-off frames get their error codes; line errors set
    their flags; nothing is executed and the link recovers."""
    tb = UartBench(dut, "malformed_frames")
    await tb.start()
    d, context = CONFIG.d, CONFIG.context
    target = context - 1
    await tb.write_keys([target], vectors(tb.rng, 1))
    probe = vectors(tb.rng, 1)[0]
    key = np.array(vectors(tb.rng, 1)[0], dtype="<u2").tobytes()
    record = target.to_bytes(2, "little") + key
    query = (0).to_bytes(2, "little") + (context - 1).to_bytes(2, "little") + key

    good = encode_frame(Command.IDENTIFY)
    await tb.expect_error(good[:-1] + bytes([good[-1] ^ 0x01]), ErrorCode.BAD_CHECKSUM,
                          Command.IDENTIFY)
    write = encode_frame(Command.WRITE_KEY, record)
    await tb.expect_error(write[:10] + bytes([write[10] ^ 0x80]) + write[11:],
                          ErrorCode.BAD_CHECKSUM, Command.WRITE_KEY)
    await tb.expect_error(encode_frame(0x42), ErrorCode.UNKNOWN_COMMAND, 0x42)
    await tb.expect_error(encode_frame(0x00, b"\x01\x02\x03"), ErrorCode.UNKNOWN_COMMAND, 0x00)
    await tb.expect_error(encode_frame(Command.IDENTIFY, b"\x00"), ErrorCode.BAD_LENGTH,
                          Command.IDENTIFY)
    await tb.expect_error(encode_frame(Command.READ_ERRORS, b"\x00\x00"), ErrorCode.BAD_LENGTH,
                          Command.READ_ERRORS)
    await tb.expect_error(encode_frame(Command.WRITE_KEY), ErrorCode.BAD_LENGTH,
                          Command.WRITE_KEY)
    await tb.expect_error(encode_frame(Command.WRITE_KEY, record + b"\x00"),
                          ErrorCode.BAD_LENGTH, Command.WRITE_KEY)
    oversized = record * (BRIDGE["buffer_bytes"] // write_record_bytes(d) + 1)
    await tb.expect_error(encode_frame(Command.WRITE_KEY, oversized), ErrorCode.BAD_LENGTH,
                          Command.WRITE_KEY)
    await tb.expect_error(encode_frame(Command.QUERY, query[:-2]), ErrorCode.BAD_LENGTH,
                          Command.QUERY)
    assert len(query) == query_payload_bytes(d)

    # A frame that stops arriving ends after the frame timeout, in the header or the payload.
    for cut in (2, 3 + write_record_bytes(d) // 2):
        await tb.expect_error(write[:cut], ErrorCode.TIMEOUT, Command.WRITE_KEY)

    # None of the rejected WRITE_KEY frames (all for the target slot) may have written it.
    await tb.check_query(probe, target, target)

    # A character with its stop bit low is dropped and flagged.
    tb.line.send_levels([0] + [1, 0] * 4 + [0, 1, 1])
    await Timer(3 * tb.byte_ns, unit="ns")
    flags = await tb.call(tb.board.read_errors)
    assert flags == ErrorFlag.RX_FRAMING, f"error flags {flags!r} after a framing error"

    # A request sent while the previous reply is still going out is dropped and flagged.
    await tb.call(tb.transport.write, encode_frame(Command.IDENTIFY) * 2)
    identity = await tb.call(tb.board.identify)
    assert identity == expected_identity(), f"IDENTIFY returned {identity}"
    await Timer(25 * tb.byte_ns, unit="ns")
    assert not tb.line.buffer, f"{len(tb.line.buffer)} bytes arrived for the dropped request"
    flags = await tb.call(tb.board.read_errors)
    assert flags == ErrorFlag.RX_FRAMING | ErrorFlag.RX_OVERRUN, (
        f"error flags {flags!r} after an overrun")
    tb.finish()


@cocotb.test()
async def rejected_commands(dut):
    """Well-formed frames with slots >= T, or LOAD_SIGNS of the wrong kind, are rejected whole."""
    tb = UartBench(dut, "rejected_commands")
    await tb.start()
    d, context = CONFIG.d, CONFIG.context
    target = context - 1
    await tb.write_keys([target], vectors(tb.rng, 1))
    probe = vectors(tb.rng, 1)[0]
    key = np.array(vectors(tb.rng, 1)[0], dtype="<u2").tobytes()

    # Slot fields are compared over all 16 bits, in every record of a batch. With T = 5 the
    # slot 5 still fits the macro's 3-bit slot field.
    records = target.to_bytes(2, "little") + key + context.to_bytes(2, "little") + key
    await tb.expect_error(encode_frame(Command.WRITE_KEY, records), ErrorCode.BAD_SLOT,
                          Command.WRITE_KEY)
    for fields in ((0, 0xFFFF), (context, 0)):
        query = b"".join(value.to_bytes(2, "little") for value in fields) + key
        await tb.expect_error(encode_frame(Command.QUERY, query), ErrorCode.BAD_SLOT,
                              Command.QUERY)

    signs = bytes(d // 8)
    if CONFIG.runtime_signs:
        await tb.expect_error(encode_frame(Command.LOAD_SIGNS, signs + b"\x00"),
                              ErrorCode.BAD_LENGTH, Command.LOAD_SIGNS)
    else:
        await tb.expect_error(encode_frame(Command.LOAD_SIGNS, signs), ErrorCode.UNSUPPORTED,
                              Command.LOAD_SIGNS)

    # The rejected batch must not have written its valid first record either.
    await tb.check_query(probe, target, target)
    flags = await tb.call(tb.board.read_errors)
    assert flags == ErrorFlag.NONE, f"error flags {flags!r}: a bad slot reached the macro"
    tb.finish()


@cocotb.test()
async def host_stall(dut):
    """Stall the host's reads while scores stream out; RTS/CTS must lose nothing."""
    tb = UartBench(dut, "host_stall")
    await tb.start()
    context = CONFIG.context
    frames = -(-context // BRIDGE["scores_per_frame"])
    reply_bytes = 5 * frames + 6 * context
    assert reply_bytes > HOST_BUFFER_BYTES, (
        f"a full-range reply ({reply_bytes} bytes) must exceed the host buffer "
        f"({HOST_BUFFER_BYTES}) for this test to stall the bridge")
    # The stall covers sending the QUERY frame, the first HOST_BUFFER_BYTES bytes of the reply
    # that fill the line's buffer, and as long again with the bridge held by RTS#.
    stall_ns = (4 + query_payload_bytes(CONFIG.d) + 2 * HOST_BUFFER_BYTES) * tb.byte_ns
    ranges = [(context - 1, context - 2)] + [(0, context - 1)] * round(effort())
    for first, last in ranges:
        raised = tb.line.rts_raised
        await tb.check_query(vectors(tb.rng, 1)[0], first, last, stall_ns=stall_ns)
        assert tb.line.rts_raised > raised, "the stalled host never raised RTS#"
    tb.finish()
