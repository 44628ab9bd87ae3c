"""Framing protocol of the UART board demo: byte layout, CRC-8, frame and payload codecs.

The host client (:mod:`fpga.host`), the gateware (:mod:`fpga.uart_top`) and the tests take every
constant and payload layout from this module, so the two ends cannot disagree. ``docs/uart.md``
describes the protocol for readers.

Every frame, in both directions, is::

    command (1 byte) | length (2 bytes, little-endian) | payload (length bytes) | CRC-8 (1 byte)

The CRC-8 covers the command, length and payload bytes. Its polynomial is x^8 + x^2 + x + 1
(0x07), the register starts at 0x00, bits are not reflected and there is no final XOR (the
catalogued CRC-8/SMBUS; its check value for the ASCII bytes ``123456789`` is 0xF4). All
multi-byte fields are little-endian.
"""

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

import numpy as np


__all__ = [
    "PROTOCOL_VERSION", "CRC8_POLYNOMIAL", "HEADER_BYTES", "MAX_PAYLOAD_BYTES", "SLOT_BYTES",
    "SCORE_RECORD_BYTES", "SCORES_LAST", "MAX_SCORES_PER_FRAME", "MAX_REPLY_PAYLOAD_BYTES",
    "DEFAULT_BAUD", "INPUT_FORMAT_CODES",
    "Command", "Reply", "ErrorCode", "ErrorFlag",
    "ProtocolError", "ChecksumError", "FramingError", "ReplyTimeout", "UnexpectedReply",
    "BoardError",
    "crc8", "encode_frame", "read_frame", "Frame", "Identity",
    "write_record_bytes", "query_payload_bytes", "signs_payload_bytes",
    "encode_write_keys", "encode_query", "encode_signs", "decode_scores", "decode_write_ack",
    "decode_error", "decode_error_flags",
]


PROTOCOL_VERSION = 1
"""Version byte that IDENTIFY returns; it changes whenever a frame layout changes."""

CRC8_POLYNOMIAL = 0x07
HEADER_BYTES = 3
"""Command byte and the 16-bit length."""
MAX_PAYLOAD_BYTES = 0xFFFF
SLOT_BYTES = 2
"""Width of every slot, first and last field: slots go up to 65535 (a context of 65536)."""
SCORE_RECORD_BYTES = 6
"""One score in a SCORES reply: slot (2 bytes) and the binary32 bit pattern (4 bytes)."""
SCORES_LAST = 0x01
"""Flag bit of a SCORES reply: the frame ends with the last score of the query."""
MAX_SCORES_PER_FRAME = 255
"""IDENTIFY reports the board's batch size in one byte."""
MAX_REPLY_PAYLOAD_BYTES = 1 + SCORE_RECORD_BYTES * MAX_SCORES_PER_FRAME
"""Largest payload of any reply: a SCORES reply with the largest batch."""

DEFAULT_BAUD = 3_000_000
"""Baud rate of the board demo: the fastest rate of the ULX3S's FT231X USB UART."""

INPUT_FORMAT_CODES = {"fp16": 0, "bf16": 1}
"""Input format byte of IDENTIFY."""

_IDENTIFY = struct.Struct("<BHBIBBHB")
_RUNTIME_SIGNS = 0x01


class Command(IntEnum):
    """Command byte of a request (host to board)."""
    IDENTIFY = 0x01
    WRITE_KEY = 0x02
    QUERY = 0x03
    LOAD_SIGNS = 0x04
    READ_ERRORS = 0x05


class Reply(IntEnum):
    """Command byte of a reply (board to host): the request's command with bit 7 set, or ERROR."""
    IDENTIFY = 0x81
    WRITE_ACK = 0x82
    SCORES = 0x83
    SIGNS_ACK = 0x84
    ERRORS = 0x85
    ERROR = 0xFF


class ErrorCode(IntEnum):
    """First payload byte of an ERROR reply. The board executed nothing of the frame."""
    BAD_CHECKSUM = 1
    UNKNOWN_COMMAND = 2
    BAD_LENGTH = 3
    TIMEOUT = 4
    UNSUPPORTED = 5
    BAD_SLOT = 6


class ErrorFlag(IntFlag):
    """Bits of the READ_ERRORS reply; each is sticky until the board is reset or reconfigured."""
    NONE = 0
    BAD_SLOT = 0x01
    """The macro dropped a write to a slot >= context."""
    BAD_RANGE = 0x02
    """The macro received a query with first or last >= context."""
    RX_OVERRUN = 0x04
    """A byte arrived while the board was still executing a frame, and was dropped."""
    RX_FRAMING = 0x08
    """A byte arrived with its stop bit low (wrong baud rate or line noise), and was dropped."""


class ProtocolError(Exception):
    """A reply broke the protocol, or the board reported an error."""


class ChecksumError(ProtocolError):
    """A reply's CRC-8 does not match its bytes."""


class FramingError(ProtocolError):
    """A reply's command, length or payload layout is invalid."""


class ReplyTimeout(ProtocolError):
    """The board sent fewer bytes than the reply needs before the transport timed out."""


class UnexpectedReply(ProtocolError):
    """A well-formed reply that is not a reply to the request that was sent."""


class BoardError(ProtocolError):
    """The board replied with an ERROR reply.

    ``code`` is the :class:`ErrorCode` (or the raw byte if it is unknown) and ``command`` the
    command byte of the rejected frame.
    """
    def __init__(self, code, command):
        self.code = code
        self.command = command
        try:
            code_text = ErrorCode(code).name
        except ValueError:
            code_text = f"unknown error code {code}"
        try:
            command_text = Command(command).name
        except ValueError:
            command_text = f"0x{command:02x}"
        super().__init__(f"board rejected the {command_text} frame: {code_text}")


def crc8(data, crc=0):
    """Return the CRC-8 (polynomial 0x07, no reflection, no final XOR) of ``data``.

    ``crc`` is the register value to continue from, so ``crc8(b, crc8(a)) == crc8(a + b)``.
    """
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC8_POLYNOMIAL if crc & 0x80 else crc << 1) & 0xFF
    return crc


def _check_byte(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be in 0..255, not {value}")
    return value


def encode_frame(command, payload=b""):
    """Return the frame bytes of ``command`` (0..255) with ``payload`` (at most 65535 bytes)."""
    _check_byte("command", command)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload must be at most {MAX_PAYLOAD_BYTES} bytes, "
                         f"not {len(payload)}")
    body = bytes([command]) + struct.pack("<H", len(payload)) + payload
    return body + bytes([crc8(body)])


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its command byte and payload."""
    command: int
    payload: bytes


def read_frame(read_exact, max_payload=MAX_PAYLOAD_BYTES):
    """Read one frame with ``read_exact(n) -> bytes`` and return it as a :class:`Frame`.

    Raises :class:`FramingError` if the length field exceeds ``max_payload`` (the frame is then
    not consumed further) and :class:`ChecksumError` if the CRC does not match.
    ``read_exact`` raises :class:`ReplyTimeout` itself when bytes are missing.
    """
    header = read_exact(HEADER_BYTES)
    command = header[0]
    length = header[1] | header[2] << 8
    if length > max_payload:
        raise FramingError(f"reply 0x{command:02x} announces {length} payload bytes, more than "
                           f"the {max_payload} any reply of this board can have; the byte "
                           f"stream is out of step")
    payload = read_exact(length)
    received = read_exact(1)[0]
    expected = crc8(header + payload)
    if received != expected:
        raise ChecksumError(f"reply 0x{command:02x} with {length} payload bytes has CRC-8 "
                            f"0x{received:02x}, expected 0x{expected:02x}")
    return Frame(command, bytes(payload))


def write_record_bytes(d):
    """Bytes of one key in a WRITE_KEY payload: slot and ``d`` 16-bit elements."""
    return SLOT_BYTES + 2 * d


def query_payload_bytes(d):
    """Bytes of a QUERY payload: first, last and ``d`` 16-bit elements."""
    return 2 * SLOT_BYTES + 2 * d


def signs_payload_bytes(d):
    """Bytes of a LOAD_SIGNS payload: one bit per coordinate, ``d`` is a multiple of 8."""
    return d // 8


@dataclass(frozen=True)
class Identity:
    """The IDENTIFY reply: protocol version and the parameters of the macro on the board.

    ``max_payload`` is the largest request payload the board's frame buffer takes, and
    ``scores_per_frame`` the largest number of scores in one SCORES reply.
    """
    version: int
    d: int
    bits: int
    context: int
    input_format: str
    runtime_signs: bool
    max_payload: int
    scores_per_frame: int

    PAYLOAD_BYTES = _IDENTIFY.size

    def to_bytes(self):
        """Return the 13-byte IDENTIFY payload."""
        flags = _RUNTIME_SIGNS if self.runtime_signs else 0
        return _IDENTIFY.pack(self.version, self.d, self.bits, self.context,
                              INPUT_FORMAT_CODES[self.input_format], flags, self.max_payload,
                              self.scores_per_frame)

    @classmethod
    def from_bytes(cls, payload):
        """Decode an IDENTIFY payload; raise :class:`FramingError` if it is malformed."""
        if len(payload) != _IDENTIFY.size:
            raise FramingError(f"IDENTIFY reply payload must be {_IDENTIFY.size} bytes, "
                               f"not {len(payload)}")
        (version, d, bits, context, format_code, flags, max_payload,
         scores_per_frame) = _IDENTIFY.unpack(payload)
        formats = {code: name for name, code in INPUT_FORMAT_CODES.items()}
        if format_code not in formats:
            raise FramingError(f"IDENTIFY reply names input format {format_code}, not one of "
                               f"{sorted(formats)}")
        return cls(version=version, d=d, bits=bits, context=context,
                   input_format=formats[format_code],
                   runtime_signs=bool(flags & _RUNTIME_SIGNS), max_payload=max_payload,
                   scores_per_frame=scores_per_frame)


def _check_slot(name, value, context):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 0 <= value < context:
        raise ValueError(f"{name} must be in 0..{context - 1} (the context), not {value}")
    return int(value)


def _vector_bytes(name, vector, d):
    array = np.asarray(vector)
    if array.dtype != np.uint16:
        raise TypeError(f"{name} must be a uint16 array of bit patterns, not {array.dtype}")
    if array.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},), not {array.shape}")
    return array.astype("<u2").tobytes()


def encode_write_keys(slots, keys, d, context):
    """Return the WRITE_KEY payload for keys ``keys[i]`` (uint16 bit patterns) into ``slots[i]``."""
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] != d:
        raise ValueError(f"keys must have shape (n, {d}), not {keys.shape}")
    if len(slots) != len(keys):
        raise ValueError(f"slots and keys must have the same length, not {len(slots)} and "
                         f"{len(keys)}")
    parts = []
    for index, (slot, key) in enumerate(zip(slots, keys)):
        slot = _check_slot(f"slots[{index}]", slot, context)
        parts.append(struct.pack("<H", slot) + _vector_bytes(f"keys[{index}]", key, d))
    return b"".join(parts)


def encode_query(first, last, query, d, context):
    """Return the QUERY payload scoring ``query`` (uint16 bit patterns) against first..last."""
    first = _check_slot("first", first, context)
    last = _check_slot("last", last, context)
    return struct.pack("<HH", first, last) + _vector_bytes("query", query, d)


def encode_signs(signs, d):
    """Return the LOAD_SIGNS payload for ``d`` signs of +1/-1 (bit i set means s_i = -1)."""
    signs = list(signs)
    if len(signs) != d:
        raise ValueError(f"signs must have {d} entries, not {len(signs)}")
    word = 0
    for index, sign in enumerate(signs):
        if sign not in (1, -1):
            raise ValueError(f"signs[{index}] must be +1 or -1, not {sign!r}")
        if sign == -1:
            word |= 1 << index
    return word.to_bytes(signs_payload_bytes(d), "little")


def decode_scores(payload):
    """Decode a SCORES payload into ``(last, slots, bits)``.

    ``last`` is true when the frame ends with the query's last score. ``slots`` and ``bits``
    (binary32 patterns) are lists of at least one entry, both of the same length.
    """
    if len(payload) < 1 + SCORE_RECORD_BYTES or (len(payload) - 1) % SCORE_RECORD_BYTES:
        raise FramingError(f"SCORES payload must be 1 + {SCORE_RECORD_BYTES} * n bytes with "
                           f"n >= 1, not {len(payload)}")
    flags = payload[0]
    if flags & ~SCORES_LAST:
        raise FramingError(f"SCORES flags byte 0x{flags:02x} has undefined bits set")
    slots, bits = [], []
    for offset in range(1, len(payload), SCORE_RECORD_BYTES):
        slot, value = struct.unpack_from("<HI", payload, offset)
        slots.append(slot)
        bits.append(value)
    return bool(flags & SCORES_LAST), slots, bits


def decode_write_ack(payload):
    """Return the number of keys a WRITE_ACK payload reports."""
    if len(payload) != 2:
        raise FramingError(f"WRITE_ACK payload must be 2 bytes, not {len(payload)}")
    return payload[0] | payload[1] << 8


def decode_error(payload):
    """Return ``(code, command)`` of an ERROR payload."""
    if len(payload) != 2:
        raise FramingError(f"ERROR payload must be 2 bytes, not {len(payload)}")
    return payload[0], payload[1]


def decode_error_flags(payload):
    """Return the :class:`ErrorFlag` of an ERRORS payload."""
    if len(payload) != 1:
        raise FramingError(f"ERRORS payload must be 1 byte, not {len(payload)}")
    undefined = payload[0] & ~0x0F
    if undefined:
        raise FramingError(f"ERRORS payload 0x{payload[0]:02x} has undefined bits set")
    return ErrorFlag(payload[0])
