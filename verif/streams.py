"""Valid/ready stream drivers and monitors for the macro's ports.

Every component works in two phases per clock cycle, called by :class:`verif.bench.Bench`:

* ``drive()`` runs after the falling clock edge and sets the signals the testbench owns.
* ``sample()`` runs in the read-only phase before the next rising edge, when every signal has
  settled. A beat transfers at that rising edge exactly when ``valid`` and ``ready`` both read 1.

Sampling before the edge gives the same result on every simulator, whereas values read right at
a rising edge depend on whether the simulator has already applied that edge's register updates.
"""

import random
from collections import deque

from cocotb.types import LogicArray

from .model import Query, ScoreBeat, SignLoad, Write


class StreamProtocolError(AssertionError):
    """A stream broke the valid/ready rules or the macro's command ordering."""


def pack_elements(elements):
    """Return 16-bit elements packed LSB first (element ``j`` in bits ``[16j, 16j+16)``)."""
    word = 0
    for j, element in enumerate(elements):
        word |= (element & 0xFFFF) << (16 * j)
    return word


def unpack_elements(word, count):
    """Return ``count`` 16-bit elements of a packed word (inverse of :func:`pack_elements`)."""
    return tuple((word >> (16 * j)) & 0xFFFF for j in range(count))


class PayloadFormat:
    """Bit layout of the macro's stream payloads for one configuration (fields LSB first)."""

    def __init__(self, config):
        self.config = config
        self.slot_width = config.slot_width
        self.beats = config.beats
        self.beat_elems = config.beat_elems
        self.data_width = 16 * config.beat_elems
        self.write_width = self.slot_width + self.data_width
        self.query_width = 2 * self.slot_width + self.data_width
        self.score_width = self.slot_width + 33

    def write_beats(self, command, rng=None):
        """Return the payload words of a :class:`Write`, one per beat.

        The macro reads the slot from the first beat only. With ``rng`` the slot field of every
        later beat is random, which checks that the macro ignores it.
        """
        words = []
        for k in range(self.beats):
            chunk = command.data[k * self.beat_elems:(k + 1) * self.beat_elems]
            slot = command.slot if k == 0 or rng is None else rng.getrandbits(self.slot_width)
            words.append(slot | pack_elements(chunk) << self.slot_width)
        return words

    def query_beats(self, command, rng=None):
        """Return the payload words of a :class:`Query`, one per beat.

        As in :meth:`write_beats`, ``rng`` randomizes the slot fields of every beat but the first.
        """
        words = []
        for k in range(self.beats):
            chunk = command.data[k * self.beat_elems:(k + 1) * self.beat_elems]
            if k == 0 or rng is None:
                head = command.first | command.last << self.slot_width
            else:
                head = rng.getrandbits(2 * self.slot_width)
            words.append(head | pack_elements(chunk) << (2 * self.slot_width))
        return words

    def parse_write(self, words):
        slot = words[0] & ((1 << self.slot_width) - 1)
        data = ()
        for word in words:
            data += unpack_elements(word >> self.slot_width, self.beat_elems)
        return Write(slot=slot, data=data)

    def parse_query(self, words):
        mask = (1 << self.slot_width) - 1
        first = words[0] & mask
        last = (words[0] >> self.slot_width) & mask
        data = ()
        for word in words:
            data += unpack_elements(word >> (2 * self.slot_width), self.beat_elems)
        return Query(first=first, last=last, data=data)

    def parse_score(self, word):
        mask = (1 << self.slot_width) - 1
        return ScoreBeat(slot=word & mask, value=(word >> self.slot_width) & 0xFFFFFFFF,
                         last=(word >> (self.slot_width + 32)) & 1)


class StreamSource:
    """Driver of one input stream (``<name>__valid``, ``__ready``, ``__payload``).

    Beats are queued with :meth:`send`. Before each beat the driver stays idle for a random
    number of cycles (probability ``idle_probability`` per cycle). Once ``valid`` is high, the
    beat stays on the bus until it is accepted. While ``valid`` is low the payload is driven to X, or to
    random bits (new ones after every beat) when ``x_fill`` is false, because Verilator has no X.
    The bench reports each accepted beat with :meth:`accepted`.
    """

    def __init__(self, dut, name, width, rng, *, idle_probability=0.0, x_fill=True):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.width = width
        if len(self.payload) != width:
            raise ValueError(f"{name}__payload is {len(self.payload)} bits wide, the interface "
                             f"contract gives {width}")
        self.rng = rng
        self.idle_probability = idle_probability
        self.x_fill = x_fill
        self.queue = deque()
        self.current = None
        self.paused = False
        self._driven = None
        self._x = LogicArray("X" * width)

    @property
    def busy(self):
        """Whether beats are queued or one is waiting to be accepted."""
        return self.current is not None or bool(self.queue)

    def send(self, words):
        """Queue payload words, one beat each, to be sent in order."""
        self.queue.extend(words)

    def flush(self):
        """Drop every queued beat and the beat on the bus (used when the macro is reset)."""
        self.queue.clear()
        self.current = None

    def drive(self):
        if self.current is None and self.queue and not self.paused:
            if self.rng.random() >= self.idle_probability:
                self.current = self.queue.popleft()
        if self.current is not None:
            if self._driven != ("beat", self.current):
                self.valid.value = 1
                self.payload.value = self.current
                self._driven = ("beat", self.current)
        elif self._driven != "idle":
            self.valid.value = 0
            self.payload.value = self._x if self.x_fill else self.rng.getrandbits(self.width)
            self._driven = "idle"

    def accepted(self):
        """Note that the beat on the bus was accepted at the coming clock edge."""
        self.current = None


class ScoreSink:
    """Receiver of the score stream with random back-pressure.

    Each cycle ``ready`` is high with probability ``ready_probability``; ``burst`` > 0 keeps the
    previous ``ready`` value for a further cycle with that probability, which gives long stalls
    and long bursts. Every accepted beat goes to ``on_beat``. The sink also checks the stream
    rule that a beat offered and not taken stays on the bus unchanged until it is taken.
    """

    def __init__(self, dut, fmt, rng, on_beat, *, ready_probability=1.0, burst=0.0):
        self.valid = dut.score__valid
        self.ready = dut.score__ready
        self.payload = dut.score__payload
        if len(self.payload) != fmt.score_width:
            raise ValueError(f"score__payload is {len(self.payload)} bits wide, the interface "
                             f"contract gives {fmt.score_width}")
        self.fmt = fmt
        self.rng = rng
        self.on_beat = on_beat
        self.ready_probability = ready_probability
        self.burst = burst
        self.enabled = True
        self._ready = None
        self._offered = None
        self.accepted = 0

    def drive(self):
        if not self.enabled:
            ready = 0
        elif self._ready is not None and self.rng.random() < self.burst:
            ready = self._ready
        else:
            ready = int(self.rng.random() < self.ready_probability)
        if ready != self._ready:
            self.ready.value = ready
            self._ready = ready

    def forget_offer(self):
        """Forget the beat on the bus (a reset may withdraw it legally)."""
        self._offered = None

    def sample(self):
        if not int(self.valid.value):
            if self._offered is not None:
                raise StreamProtocolError(
                    f"score__valid fell without a transfer while offering {self._offered}")
            return
        word = self.payload.value.to_unsigned()
        if self._offered is not None and word != self._offered:
            raise StreamProtocolError(
                f"score__payload changed from {self._offered:#x} to {word:#x} before the beat "
                f"was accepted")
        if self._ready:
            self._offered = None
            self.accepted += 1
            self.on_beat(self.fmt.parse_score(word))
        else:
            self._offered = word


class CommandMonitor:
    """Observer of the write, query and sign streams that rebuilds accepted commands.

    A command starts with its first-beat handshake; ``on_start(command_kind, first_word)`` is
    called then, and ``on_command(command)`` once its last beat is accepted. The monitor raises
    :class:`StreamProtocolError` when the macro breaks its ordering rules: a beat of another
    stream accepted inside a command, two first beats accepted in one cycle, or a sign beat
    accepted while a command is in flight.
    """

    def __init__(self, dut, fmt, on_command, on_start=None, *, runtime_signs=False):
        self.fmt = fmt
        self.on_command = on_command
        self.on_start = on_start
        self.ports = {name: (getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
                             getattr(dut, f"{name}__payload"))
                      for name in (("write", "query", "signs") if runtime_signs
                                   else ("write", "query"))}
        self.in_flight = None
        self.words = []
        self.accepted_beats = 0

    def forget(self):
        """Drop the partly received command (the macro was reset)."""
        self.in_flight = None
        self.words = []

    def sample(self):
        """Record the handshakes of this cycle; return the names of the streams that fired."""
        fired = []
        for name, (valid, ready, payload) in self.ports.items():
            if int(valid.value) and int(ready.value):
                fired.append((name, payload.value.to_unsigned()))
        if not fired:
            return ()
        self.accepted_beats += len(fired)
        if len(fired) > 1:
            names = " and ".join(name for name, _ in fired)
            raise StreamProtocolError(f"{names} beats were accepted in the same cycle")

        name, word = fired[0]
        if name == "signs":
            if self.in_flight is not None:
                raise StreamProtocolError(
                    f"a sign beat was accepted while a {self.in_flight} command was in flight")
            self.on_command(SignLoad(word=word))
            return (name,)

        if self.in_flight is None:
            self.in_flight = name
            self.words = []
            if self.on_start is not None:
                self.on_start(name, word)
        elif self.in_flight != name:
            raise StreamProtocolError(
                f"a {name} beat was accepted in the middle of a {self.in_flight} command "
                f"(after beat {len(self.words)} of {self.fmt.beats})")

        self.words.append(word)
        if len(self.words) == self.fmt.beats:
            words, self.in_flight, self.words = self.words, None, []
            if name == "write":
                self.on_command(self.fmt.parse_write(words))
            else:
                self.on_command(self.fmt.parse_query(words))
        return (name,)


def make_rng(seed):
    """Return a ``random.Random`` for one component, derived from the test's seed."""
    return random.Random(seed)
