"""Host client of the UART board demo (``python -m fpga.host``).

:class:`Board` talks to the bitstream of ``python -m fpga --top uart`` over any byte transport.
A serial port name opens the USB UART with pyserial. Any object with ``read(n)`` and
``write(data)`` methods is used as it is, and the simulation passes one that drives the UART
pins.

The transport contract: ``write(data)`` sends every byte, and ``read(n)`` returns at most ``n``
bytes, fewer only when its timeout expired. pyserial's ``Serial`` meets it.

Every request waits for its complete reply before the next is sent, which is the flow control
the board's receive side relies on (it buffers one frame). Every reply is checked: CRC-8,
length, layout, and that it is the reply to the request that was sent. A violation raises a
:class:`fpga.protocol.ProtocolError` subclass, and an ERROR reply raises
:class:`fpga.protocol.BoardError`.

After an exception the byte stream may be out of step with the board's. Wait longer than the
board's frame timeout, discard any input (``reset_input_buffer``) and start again with
:meth:`Board.identify`.
"""

import argparse
import logging
import operator
import sys
import time

import numpy as np

from .protocol import (DEFAULT_BAUD, MAX_REPLY_PAYLOAD_BYTES, PROTOCOL_VERSION, BoardError,
                       Command, ErrorFlag, FramingError, Identity, ProtocolError, Reply,
                       ReplyTimeout, UnexpectedReply, decode_error, decode_error_flags,
                       decode_scores, decode_write_ack, encode_frame, encode_query, encode_signs,
                       encode_write_keys, read_frame, write_record_bytes)


__all__ = ["DEFAULT_TIMEOUT_S", "Board", "open_serial", "main"]


logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1.0
"""Read timeout of the serial port: longer than the board's frame timeout (50 ms) plus the
time of the largest reply at 115200 baud."""


def open_serial(port, *, baudrate=DEFAULT_BAUD, timeout=DEFAULT_TIMEOUT_S, rtscts=True):
    """Open ``port`` with pyserial, 8N1, with RTS/CTS flow control unless ``rtscts`` is false.

    With flow control the USB UART lowers RTS# only while it can take bytes, and the board
    stops sending while RTS# is high, so a host that reads slowly loses nothing.
    """
    try:
        import serial
    except ImportError as exc:
        raise ImportError("the UART client needs pyserial: pip install pyserial (or "
                          "pip install -e '.[fpga]')") from exc
    return serial.Serial(port, baudrate=baudrate, bytesize=serial.EIGHTBITS,
                         parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                         timeout=timeout, rtscts=rtscts)


class Board:
    """The board demo behind a byte transport.

    Parameters
    ----------
    port : :class:`str` or transport
        A serial port name (opened with :func:`open_serial`), or an object with ``read(n)``
        and ``write(data)`` (see the module docstring).
    baudrate, timeout, rtscts
        Passed to :func:`open_serial` when ``port`` is a name; ignored otherwise.
    """
    def __init__(self, port, *, baudrate=DEFAULT_BAUD, timeout=DEFAULT_TIMEOUT_S, rtscts=True):
        if isinstance(port, str):
            self.transport = open_serial(port, baudrate=baudrate, timeout=timeout,
                                         rtscts=rtscts)
            self._owns_transport = True
        elif callable(getattr(port, "read", None)) and callable(getattr(port, "write", None)):
            self.transport = port
            self._owns_transport = False
        else:
            raise TypeError(f"port must be a serial port name or an object with read(n) and "
                            f"write(data) methods, not {port!r}")
        self._identity = None

    def close(self):
        """Close the serial port if this object opened it."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _read_exact(self, count):
        data = bytearray()
        while len(data) < count:
            chunk = self.transport.read(count - len(data))
            if not chunk:
                raise ReplyTimeout(f"the board sent {len(data)} of the {count} bytes expected "
                                   f"before the read timed out; check the port, the baud rate "
                                   f"and that the board runs the UART bitstream")
            data += chunk
        return bytes(data)

    def send(self, command, payload=b""):
        """Send one request frame."""
        frame = encode_frame(command, payload)
        logger.debug("sending command 0x%02x with %d payload bytes", command, len(payload))
        self.transport.write(frame)

    def receive(self, expected, request):
        """Read one reply and return it as a :class:`fpga.protocol.Frame`.

        Raises :class:`BoardError` for an ERROR reply and :class:`UnexpectedReply` when the
        reply's command is not ``expected`` (a :class:`Reply`); ``request`` names the request
        in the message.
        """
        frame = read_frame(self._read_exact, MAX_REPLY_PAYLOAD_BYTES)
        logger.debug("received reply 0x%02x with %d payload bytes", frame.command,
                     len(frame.payload))
        if frame.command == Reply.ERROR:
            raise BoardError(*decode_error(frame.payload))
        if frame.command != expected:
            names = {command.value: command.name for command in Command}
            raise UnexpectedReply(f"the board replied to {names.get(request, hex(request))} "
                                  f"with 0x{frame.command:02x}, expected "
                                  f"{Reply(expected).name} (0x{expected:02x})")
        return frame

    def request(self, command, payload, expected):
        """Send one request and return its reply (see :meth:`receive`)."""
        self.send(command, payload)
        return self.receive(expected, command)

    def identify(self):
        """Ask the board for its protocol version and macro parameters.

        Returns the :class:`fpga.protocol.Identity` and keeps it for the other methods.
        Raises :class:`ProtocolError` if the board speaks another protocol version.
        """
        frame = self.request(Command.IDENTIFY, b"", Reply.IDENTIFY)
        identity = Identity.from_bytes(frame.payload)
        if identity.version != PROTOCOL_VERSION:
            raise ProtocolError(f"the board speaks protocol version {identity.version}, this "
                                f"client version {PROTOCOL_VERSION}; use the client from the "
                                f"same source tree as the bitstream")
        self._identity = identity
        return identity

    @property
    def identity(self):
        """The board's :class:`fpga.protocol.Identity`, asked once with :meth:`identify`."""
        if self._identity is None:
            self.identify()
        return self._identity

    def _bit_patterns(self, name, values, ndim):
        """Return ``values`` as uint16 bit patterns in the board's input format."""
        array = np.asarray(values)
        if array.dtype == np.float16:
            if self.identity.input_format != "fp16":
                raise TypeError(f"{name} is float16, but the board's macro takes "
                                f"{self.identity.input_format}; pass uint16 bit patterns")
            array = array.view(np.uint16)
        elif array.dtype != np.uint16:
            raise TypeError(f"{name} must be a float16 array or uint16 bit patterns, "
                            f"not {array.dtype}")
        d = self.identity.d
        if array.ndim != ndim or array.shape[-1] != d:
            shape_text = f"({d},)" if ndim == 1 else f"(n, {d})"
            raise ValueError(f"{name} must have shape {shape_text}, not {array.shape}")
        return array

    def write_keys(self, slots, keys):
        """Store ``keys[i]`` in slot ``slots[i]``; return the number of keys written.

        ``keys`` is a float16 array of shape ``(n, d)`` (FP16 macros) or uint16 bit patterns in
        the macro's input format. A single key of shape ``(d,)`` goes with an integer slot.
        Keys go in WRITE_KEY frames of up to ``max_payload // (2 + 2 d)`` keys, and each frame
        is acknowledged before the next is sent.
        """
        identity = self.identity
        if np.ndim(slots) == 0 and np.ndim(keys) == 1:
            slots, keys = [slots], np.asarray(keys)[np.newaxis]
        keys = self._bit_patterns("keys", keys, 2)
        slots = [operator.index(slot) for slot in slots]
        if len(slots) != len(keys):
            raise ValueError(f"slots and keys must have the same length, not {len(slots)} and "
                             f"{len(keys)}")
        per_frame = identity.max_payload // write_record_bytes(identity.d)
        for start in range(0, len(slots), per_frame):
            chunk = slice(start, start + per_frame)
            payload = encode_write_keys(slots[chunk], keys[chunk], identity.d, identity.context)
            frame = self.request(Command.WRITE_KEY, payload, Reply.WRITE_ACK)
            count = decode_write_ack(frame.payload)
            if count != len(slots[chunk]):
                raise UnexpectedReply(f"the board acknowledged {count} keys of a WRITE_KEY "
                                      f"frame that carried {len(slots[chunk])}")
        return len(slots)

    def score_bits(self, query, first, last):
        """Score ``query`` against slots ``first .. last`` and return the binary32 bit patterns.

        The slots run ``first, first + 1, ...`` modulo the context, so ``last < first`` wraps
        around. Returns a uint32 array of ``(last - first) % context + 1`` entries in slot order.
        """
        identity = self.identity
        query = self._bit_patterns("query", query, 1)
        payload = encode_query(first, last, query, identity.d, identity.context)
        count = (last - first) % identity.context + 1
        expected_slots = [(first + i) % identity.context for i in range(count)]

        self.send(Command.QUERY, payload)
        bits = []
        while True:
            frame = self.receive(Reply.SCORES, Command.QUERY)
            is_last, slots, values = decode_scores(frame.payload)
            if len(slots) > identity.scores_per_frame:
                raise FramingError(f"a SCORES reply carries {len(slots)} scores, more than the "
                                   f"{identity.scores_per_frame} the board announced")
            position = len(bits)
            if slots != expected_slots[position:position + len(slots)]:
                raise UnexpectedReply(
                    f"scores for slots {slots} arrived where slots "
                    f"{expected_slots[position:position + len(slots)]} were expected "
                    f"(query of slots {first}..{last})")
            bits.extend(values)
            if is_last:
                break
            if len(bits) == count:
                raise UnexpectedReply(f"the board sent all {count} scores of the query without "
                                      f"marking the last SCORES reply")
        if len(bits) != count:
            raise UnexpectedReply(f"the board marked the last SCORES reply after {len(bits)} "
                                  f"of {count} scores")
        return np.array(bits, dtype=np.uint32)

    def score(self, query, first, last):
        """Score ``query`` against slots ``first .. last``; return a float32 array.

        See :meth:`score_bits`; the values are the same bits viewed as float32.
        """
        return self.score_bits(query, first, last).view(np.float32)

    def load_signs(self, signs):
        """Load a sign vector (``d`` entries of +1/-1) into a run-time-sign macro.

        It applies to every later WRITE_KEY and QUERY. A macro with compile-time signs replies
        with an UNSUPPORTED error, raised as :class:`BoardError`.
        """
        payload = encode_signs(signs, self.identity.d)
        self.request(Command.LOAD_SIGNS, payload, Reply.SIGNS_ACK)

    def read_errors(self):
        """Return the board's sticky :class:`fpga.protocol.ErrorFlag` bits."""
        frame = self.request(Command.READ_ERRORS, b"", Reply.ERRORS)
        return decode_error_flags(frame.payload)


def _load_array(path, dtype_name):
    array = np.load(path)
    if array.dtype not in (np.float16, np.uint16):
        raise ValueError(f"{path} must hold a float16 or uint16 array ({dtype_name}), "
                         f"not {array.dtype}")
    return array


def _random_vectors(rng, count, identity):
    """Return ``count`` random Gaussian vectors as bit patterns in the board's input format."""
    import torch
    values = torch.from_numpy(rng.standard_normal((count, identity.d)).astype(np.float32))
    dtype = torch.float16 if identity.input_format == "fp16" else torch.bfloat16
    return values.to(dtype).view(torch.int16).numpy().view(np.uint16)


def _golden_config(identity, signs):
    from hdl.config import MacroConfig
    return MacroConfig(d=identity.d, bits=identity.bits, context=identity.context,
                       input_format=identity.input_format, signs=signs)


def _selftest(board, args):
    """Write random keys, score random queries and compare with golden.bitexact."""
    import torch
    from golden.bitexact import build_table, encode_keys, score_bits
    from golden.signs import signs_from_seed

    identity = board.identity
    rng = np.random.default_rng(args.seed)
    print(f"selftest: seed {args.seed}")
    signs = None
    if identity.runtime_signs:
        signs = signs_from_seed(identity.d, args.seed)
        board.load_signs(signs)
    # NOTE: with compile-time signs this assumes the bitstream's default sign vector (seed 1),
    # the one `python -m fpga --top uart` builds.
    config = _golden_config(identity, signs)

    keys = _random_vectors(rng, identity.context, identity)
    started = time.monotonic()
    board.write_keys(range(identity.context), keys)
    write_s = time.monotonic() - started

    rows = encode_keys(torch.from_numpy(keys.astype(np.int64)), config.dp, config.signs)
    mismatches = 0
    score_s = 0.0
    for _ in range(args.queries):
        query = _random_vectors(rng, 1, identity)[0]
        started = time.monotonic()
        got = board.score_bits(query, 0, identity.context - 1)
        score_s += time.monotonic() - started
        table = build_table(torch.from_numpy(query.astype(np.int64)), config.dp, config.signs)
        expected = score_bits(table, rows, config.dp).numpy().astype(np.uint32)
        mismatches += int(np.count_nonzero(got != expected))
    scores = args.queries * identity.context
    print(f"wrote {identity.context} keys in {write_s:.3f} s "
          f"({identity.context / write_s:.0f} keys/s)")
    print(f"received {scores} scores in {score_s:.3f} s ({scores / score_s:.0f} scores/s)")
    print(f"{scores - mismatches} of {scores} scores bit-exact with golden.bitexact")
    return 0 if mismatches == 0 else 1


def build_parser():
    """Return the argument parser of ``python -m fpga.host``."""
    parser = argparse.ArgumentParser(
        prog="python -m fpga.host",
        description="Talk to the AXELRAM UART board demo (python -m fpga --top uart).")
    parser.add_argument("--port", required=True, help="serial port, such as /dev/ttyUSB0")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                        help="baud rate of the bitstream (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="read timeout in seconds (default: %(default)s)")
    parser.add_argument("--no-rtscts", action="store_true",
                        help="open the port without RTS/CTS flow control; the board then "
                             "sends freely and a slow reader can lose bytes")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("identify", help="print the protocol version and macro parameters")
    commands.add_parser("errors", help="print the sticky error flags")

    write = commands.add_parser("write", help="write keys into consecutive slots")
    write.add_argument("first", type=int, help="slot of the first key")
    source = write.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help=".npy file of shape (n, d), float16 or uint16 bits")
    source.add_argument("--random", type=int, metavar="N", help="write N random keys")
    write.add_argument("--seed", type=int, default=0, help="seed of --random (default: 0)")

    score = commands.add_parser("score", help="score a query against slots FIRST..LAST")
    score.add_argument("first", type=int)
    score.add_argument("last", type=int)
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help=".npy file of shape (d,), float16 or uint16 bits")
    source.add_argument("--random", action="store_true", help="score a random query")
    score.add_argument("--seed", type=int, default=0, help="seed of --random (default: 0)")

    signs = commands.add_parser("signs", help="load a sign vector (run-time-sign macros)")
    signs.add_argument("--seed", type=int, required=True,
                       help="load golden.signs.signs_from_seed(d, SEED)")

    selftest = commands.add_parser(
        "selftest", help="fill every slot with random keys, score random queries and compare "
                         "each score with golden.bitexact")
    selftest.add_argument("--queries", type=int, default=4, help="queries (default: 4)")
    selftest.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    return parser


def _run(board, args):
    if args.command == "identify":
        identity = board.identify()
        for name, value in vars(identity).items():
            print(f"{name}: {value}")
        return 0
    if args.command == "errors":
        flags = board.read_errors()
        names = [flag.name for flag in ErrorFlag if flag and flag in flags]
        print(", ".join(names) if names else "no error flags set")
        return 0
    identity = board.identity
    if args.command == "write":
        if args.file:
            keys = _load_array(args.file, "keys")
        else:
            keys = _random_vectors(np.random.default_rng(args.seed), args.random, identity)
        slots = [(args.first + i) % identity.context for i in range(len(keys))]
        count = board.write_keys(slots, keys)
        print(f"wrote {count} keys into slots {slots[0]}..{slots[-1]}")
        return 0
    if args.command == "score":
        if args.file:
            query = _load_array(args.file, "query")
        else:
            query = _random_vectors(np.random.default_rng(args.seed), 1, identity)[0]
        values = board.score(query, args.first, args.last)
        for offset, value in enumerate(values):
            print(f"{(args.first + offset) % identity.context} {value!r}")
        return 0
    if args.command == "signs":
        from golden.signs import signs_from_seed
        board.load_signs(signs_from_seed(identity.d, args.seed))
        print(f"loaded sign vector of seed {args.seed}")
        return 0
    return _selftest(board, args)


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with Board(args.port, baudrate=args.baud, timeout=args.timeout,
                   rtscts=not args.no_rtscts) as board:
            return _run(board, args)
    except (ProtocolError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
