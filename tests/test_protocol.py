"""Tests of the UART demo's framing protocol (fpga.protocol) and its host client (fpga.host).

The client runs against :class:`FakeBoard`, a software board written from the protocol
description in docs/uart.md, which can also break the protocol in chosen ways.
"""

import re
import struct

import numpy as np
import pytest

from fpga.host import Board
from fpga.protocol import (MAX_REPLY_PAYLOAD_BYTES, PROTOCOL_VERSION, BoardError,
                           ChecksumError, Command, ErrorCode, ErrorFlag, FramingError, Identity,
                           Reply, ReplyTimeout, UnexpectedReply, crc8, decode_error_flags,
                           decode_scores, decode_write_ack, encode_frame, encode_query,
                           encode_signs, encode_write_keys, read_frame)


def crc8_by_division(data):
    """CRC-8 as the remainder of data(x) * x^8 divided by x^8 + x^2 + x + 1 (0x107)."""
    remainder = int.from_bytes(bytes(data), "big") << 8
    divisor = 0x107
    for shift in range(remainder.bit_length() - 9, -1, -1):
        if remainder >> (shift + 8) & 1:
            remainder ^= divisor << shift
    return remainder


def reader(data):
    """Return a ``read_exact`` over ``data`` that raises ReplyTimeout when it runs out."""
    stream = bytearray(data)

    def read_exact(count):
        if count > len(stream):
            raise ReplyTimeout(f"{count} bytes requested, {len(stream)} left")
        chunk = bytes(stream[:count])
        del stream[:count]
        return chunk
    return read_exact


# -- CRC-8 and frames -------------------------------------------------------------------------

def test_crc8_check_value():
    # The catalogued check value of CRC-8/SMBUS (poly 0x07, init 0, no reflection, no xorout).
    assert crc8(b"123456789") == 0xF4


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x80", b"\xff\xff", bytes(range(40))])
def test_crc8_matches_polynomial_division(data):
    assert crc8(data) == crc8_by_division(data)


def test_crc8_continues_from_register():
    assert crc8(b"world", crc8(b"hello ")) == crc8(b"hello world")


def test_frame_layout():
    frame = encode_frame(0x02, b"\xaa\xbb\xcc")
    assert frame[:3] == b"\x02\x03\x00"
    assert frame[3:6] == b"\xaa\xbb\xcc"
    assert frame[6] == crc8_by_division(b"\x02\x03\x00\xaa\xbb\xcc")
    assert len(frame) == 7


def test_frame_with_crc_leaves_zero_remainder():
    frame = encode_frame(Command.QUERY, bytes(range(100)))
    assert crc8_by_division(frame) == 0


def test_frame_length_is_little_endian():
    frame = encode_frame(0x01, bytes(0x1234))
    assert frame[1:3] == b"\x34\x12"


@pytest.mark.parametrize("command, payload, error, message", [
    (256, b"", ValueError, r"^command must be in 0\.\.255, not 256$"),
    (-1, b"", ValueError, r"^command must be in 0\.\.255, not -1$"),
    ("1", b"", TypeError, r"^command must be an integer, not '1'$"),
    (True, b"", TypeError, r"^command must be an integer, not True$"),
    (1, "text", TypeError, r"^payload must be bytes, not str$"),
    (1, bytes(65536), ValueError, r"^payload must be at most 65535 bytes, not 65536$"),
])
def test_frame_rejects(command, payload, error, message):
    with pytest.raises(error, match=message):
        encode_frame(command, payload)


def test_read_frame_round_trip():
    frame = read_frame(reader(encode_frame(0x83, b"\x01\x02") + b"rest"))
    assert frame.command == 0x83
    assert frame.payload == b"\x01\x02"


def test_read_frame_bad_checksum():
    data = bytearray(encode_frame(0x81, b"\x10\x20"))
    data[-1] ^= 0x40
    with pytest.raises(ChecksumError, match=r"^reply 0x81 with 2 payload bytes has CRC-8 0x"):
        read_frame(reader(data))


def test_read_frame_corrupt_payload():
    data = bytearray(encode_frame(0x81, b"\x10\x20"))
    data[3] ^= 0x01
    with pytest.raises(ChecksumError):
        read_frame(reader(data))


def test_read_frame_length_limit():
    with pytest.raises(FramingError, match=r"announces 2000 payload bytes, more than the 1531"):
        read_frame(reader(encode_frame(0x83, bytes(2000))), MAX_REPLY_PAYLOAD_BYTES)


def test_read_frame_short():
    with pytest.raises(ReplyTimeout):
        read_frame(reader(encode_frame(0x81, b"\x01\x02\x03")[:-2]))


# -- payloads ---------------------------------------------------------------------------------

def test_identity_layout():
    identity = Identity(version=1, d=128, bits=3, context=65536, input_format="bf16",
                        runtime_signs=True, max_payload=2048, scores_per_frame=16)
    expected = bytes([1, 128, 0, 3, 0x00, 0x00, 0x01, 0x00, 1, 1, 0x00, 0x08, 16])
    assert identity.to_bytes() == expected
    assert Identity.from_bytes(expected) == identity


@pytest.mark.parametrize("payload, message", [
    (bytes(12), r"^IDENTIFY reply payload must be 13 bytes, not 12$"),
    (bytes([1, 16, 0, 2, 8, 0, 0, 0, 7, 0, 0, 8, 16]), r"^IDENTIFY reply names input format 7"),
])
def test_identity_rejects(payload, message):
    with pytest.raises(FramingError, match=message):
        Identity.from_bytes(payload)


def test_write_keys_layout():
    keys = np.array([[0x3C00, 0x8001], [0x0000, 0xFFFF]], dtype=np.uint16)
    payload = encode_write_keys([5, 0x0102], keys, d=2, context=300)
    assert payload == bytes([5, 0, 0x00, 0x3C, 0x01, 0x80,
                             0x02, 0x01, 0x00, 0x00, 0xFF, 0xFF])


@pytest.mark.parametrize("slots, keys, error, message", [
    ([8], np.zeros((1, 2), np.uint16), ValueError, r"^slots\[0\] must be in 0\.\.7 "),
    ([-1], np.zeros((1, 2), np.uint16), ValueError, r"^slots\[0\] must be in 0\.\.7 "),
    ([1.0], np.zeros((1, 2), np.uint16), TypeError, r"^slots\[0\] must be an integer"),
    ([1, 2], np.zeros((1, 2), np.uint16), ValueError, r"^slots and keys must have the same"),
    ([1], np.zeros((1, 3), np.uint16), ValueError, r"^keys must have shape \(n, 2\)"),
    ([1], np.zeros((1, 2), np.int32), TypeError, r"^keys\[0\] must be a uint16 array"),
])
def test_write_keys_rejects(slots, keys, error, message):
    with pytest.raises(error, match=message):
        encode_write_keys(slots, keys, d=2, context=8)


def test_query_layout():
    query = np.array([0x1234, 0xABCD], dtype=np.uint16)
    assert encode_query(7, 2, query, d=2, context=8) == bytes([7, 0, 2, 0, 0x34, 0x12,
                                                               0xCD, 0xAB])


def test_query_rejects_last_outside_context():
    with pytest.raises(ValueError, match=r"^last must be in 0\.\.7 \(the context\), not 8$"):
        encode_query(0, 8, np.zeros(2, np.uint16), d=2, context=8)


def test_signs_bit_order():
    signs = [1] * 16
    signs[0] = signs[9] = signs[15] = -1
    assert encode_signs(signs, 16) == bytes([0x01, 0x82])


def test_signs_reject_zero():
    with pytest.raises(ValueError, match=r"^signs\[3\] must be \+1 or -1, not 0$"):
        encode_signs([1, 1, 1, 0] + [1] * 12, 16)


def test_scores_layout():
    payload = bytes([1]) + struct.pack("<HI", 3, 0x3F800000) + struct.pack("<HI", 4, 0x7FC00000)
    assert decode_scores(payload) == (True, [3, 4], [0x3F800000, 0x7FC00000])


@pytest.mark.parametrize("payload, message", [
    (bytes([1]), r"^SCORES payload must be 1 \+ 6 \* n bytes with n >= 1, not 1$"),
    (bytes(8), r"^SCORES payload must be 1 \+ 6 \* n bytes with n >= 1, not 8$"),
    (bytes([2]) + bytes(6), r"^SCORES flags byte 0x02 has undefined bits set$"),
])
def test_scores_reject(payload, message):
    with pytest.raises(FramingError, match=message):
        decode_scores(payload)


def test_small_payloads():
    assert decode_write_ack(b"\x2c\x01") == 300
    assert decode_error_flags(b"\x05") == ErrorFlag.BAD_SLOT | ErrorFlag.RX_OVERRUN
    with pytest.raises(FramingError, match=r"^ERRORS payload 0x10 has undefined bits set$"):
        decode_error_flags(b"\x10")


def test_board_error_message():
    error = BoardError(ErrorCode.BAD_SLOT, Command.QUERY)
    assert str(error) == "board rejected the QUERY frame: BAD_SLOT"
    assert str(BoardError(99, 0x42)) == ("board rejected the 0x42 frame: unknown error code 99")


# -- the client against a software board ------------------------------------------------------

class FakeBoard:
    """A board in software: a byte transport that replies to requests as the protocol defines.

    Scores are ``slot + 0.5`` as binary32, so the client's ordering checks have something to
    check. ``fault`` breaks the next reply: ``"crc"``, ``"command"``, ``"slot order"``,
    ``"no last"``, ``"early last"``, ``"oversize"``, ``"silent"`` or an :class:`ErrorCode`.
    """
    def __init__(self, *, d=16, context=8, max_payload=100, scores_per_frame=3,
                 runtime_signs=False):
        self.identity = Identity(version=PROTOCOL_VERSION, d=d, bits=2, context=context,
                                 input_format="fp16", runtime_signs=runtime_signs,
                                 max_payload=max_payload, scores_per_frame=scores_per_frame)
        self.keys = {}
        self.requests = []
        self.fault = None
        self.output = bytearray()

    def write(self, data):
        frame = read_frame(reader(data))
        self.requests.append(frame)
        if self.fault == "silent":
            self.fault = None
        else:
            self._answer(frame.command, frame.payload)
        return len(data)

    def read(self, count):
        chunk = bytes(self.output[:count])
        del self.output[:count]
        return chunk

    def _reply(self, command, payload=b""):
        frame = bytearray(encode_frame(command, payload))
        fault, self.fault = self.fault, None
        if fault == "crc":
            frame[-1] ^= 0xFF
        elif fault == "command":
            frame = bytearray(encode_frame(Reply.SIGNS_ACK, payload))
        elif isinstance(fault, ErrorCode):
            frame = bytearray(encode_frame(Reply.ERROR, bytes([fault, self.requests[-1].command])))
        elif fault is not None:
            self.fault = fault
        self.output += frame

    def _answer(self, command, payload):
        identity = self.identity
        if command == Command.IDENTIFY:
            self._reply(Reply.IDENTIFY, identity.to_bytes())
        elif command == Command.WRITE_KEY:
            size = 2 + 2 * identity.d
            for offset in range(0, len(payload), size):
                slot = payload[offset] | payload[offset + 1] << 8
                self.keys[slot] = payload[offset + 2:offset + size]
            self._reply(Reply.WRITE_ACK, struct.pack("<H", len(payload) // size))
        elif command == Command.QUERY:
            first, last = struct.unpack_from("<HH", payload)
            count = (last - first) % identity.context + 1
            slots = [(first + i) % identity.context for i in range(count)]
            self._send_scores(slots)
        elif command == Command.LOAD_SIGNS:
            if identity.runtime_signs:
                self._reply(Reply.SIGNS_ACK)
            else:
                self._reply(Reply.ERROR, bytes([ErrorCode.UNSUPPORTED, command]))
        elif command == Command.READ_ERRORS:
            self._reply(Reply.ERRORS, bytes([ErrorFlag.RX_FRAMING]))

    def _send_scores(self, slots):
        batch = self.identity.scores_per_frame
        if self.fault == "oversize":
            batch += 1
        if self.fault == "slot order":
            slots = slots[:1] + slots[2:] + slots[1:2]
        chunks = [slots[i:i + batch] for i in range(0, len(slots), batch)]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            if self.fault == "no last":
                last = False
            if self.fault == "early last" and len(chunks) > 1:
                last = index == 0
            payload = bytes([int(last)]) + b"".join(
                struct.pack("<Hf", slot, slot + 0.5) for slot in chunk)
            self._reply(Reply.SCORES, payload)
            if self.fault == "early last" and last:
                break
        if self.fault in ("oversize", "slot order", "no last", "early last"):
            self.fault = None


def fp16_keys(count, d, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, d)).astype(np.float16)


def test_board_identify():
    fake = FakeBoard()
    board = Board(fake)
    assert board.identify() == fake.identity


def test_board_rejects_other_protocol_version():
    fake = FakeBoard()
    fake.identity = Identity(**{**vars(fake.identity), "version": PROTOCOL_VERSION + 1})
    with pytest.raises(Exception, match=r"speaks protocol version 2, this client version 1"):
        Board(fake).identify()


def test_board_write_keys_batches():
    fake = FakeBoard(d=16, max_payload=100)
    board = Board(fake)
    keys = fp16_keys(5, 16)
    assert board.write_keys([4, 3, 2, 1, 0], keys) == 5
    writes = [frame for frame in fake.requests if frame.command == Command.WRITE_KEY]
    assert [len(frame.payload) for frame in writes] == [68, 68, 34]
    assert fake.keys[4] == keys[0].view(np.uint16).astype("<u2").tobytes()
    assert fake.keys[0] == keys[4].view(np.uint16).astype("<u2").tobytes()


def test_board_write_one_key():
    fake = FakeBoard()
    Board(fake).write_keys(6, fp16_keys(1, 16)[0])
    assert set(fake.keys) == {6}


def test_board_write_rejects_float32():
    with pytest.raises(TypeError, match=r"^keys must be a float16 array or uint16 bit "):
        Board(FakeBoard()).write_keys([0], np.zeros((1, 16), np.float32))


def test_board_write_rejects_wrong_d():
    with pytest.raises(ValueError, match=r"^keys must have shape \(n, 16\), not \(1, 8\)$"):
        Board(FakeBoard()).write_keys([0], np.zeros((1, 8), np.float16))


@pytest.mark.parametrize("first, last, slots", [
    (0, 7, list(range(8))),
    (6, 1, [6, 7, 0, 1]),
    (3, 3, [3]),
    (5, 4, [5, 6, 7, 0, 1, 2, 3, 4]),
])
def test_board_score_ranges(first, last, slots):
    scores = Board(FakeBoard()).score(np.zeros(16, np.float16), first, last)
    assert scores.dtype == np.float32
    assert scores.tolist() == [slot + 0.5 for slot in slots]


def test_board_score_bits():
    bits = Board(FakeBoard()).score_bits(np.zeros(16, np.float16), 1, 1)
    assert bits.dtype == np.uint32
    assert bits.tolist() == [0x3FC00000]


@pytest.mark.parametrize("fault, error, message", [
    ("crc", ChecksumError, r"has CRC-8"),
    ("command", UnexpectedReply, r"replied to QUERY with 0x84, expected SCORES"),
    ("slot order", UnexpectedReply, r"scores for slots \[0, 2, 3\] arrived where slots "
                                    r"\[0, 1, 2\] were expected"),
    ("no last", UnexpectedReply, r"sent all 8 scores of the query without marking"),
    ("early last", UnexpectedReply, r"marked the last SCORES reply after 3 of 8 scores"),
    ("oversize", FramingError, r"carries 4 scores, more than the 3 the board announced"),
    ("silent", ReplyTimeout, r"sent 0 of the 3 bytes expected"),
    (ErrorCode.BAD_SLOT, BoardError, r"^board rejected the QUERY frame: BAD_SLOT$"),
])
def test_board_score_detects(fault, error, message):
    fake = FakeBoard()
    board = Board(fake)
    board.identify()
    fake.fault = fault
    with pytest.raises(error, match=message):
        board.score(np.zeros(16, np.float16), 0, 7)


def test_board_write_detects_short_ack():
    fake = FakeBoard()
    board = Board(fake)
    board.identify()
    fake.fault = "command"
    with pytest.raises(UnexpectedReply, match=r"replied to WRITE_KEY with 0x84"):
        board.write_keys([0], fp16_keys(1, 16))


def test_board_load_signs_unsupported():
    board = Board(FakeBoard(runtime_signs=False))
    with pytest.raises(BoardError, match=r"^board rejected the LOAD_SIGNS frame: UNSUPPORTED$"):
        board.load_signs([1] * 16)


def test_board_load_signs():
    fake = FakeBoard(runtime_signs=True)
    Board(fake).load_signs([-1] + [1] * 15)
    assert fake.requests[-1].payload == b"\x01\x00"


def test_board_read_errors():
    assert Board(FakeBoard()).read_errors() == ErrorFlag.RX_FRAMING


def test_board_rejects_non_transport():
    with pytest.raises(TypeError, match=re.escape("port must be a serial port name or an "
                                                  "object with read(n) and write(data)")):
        Board(42)


class GoldenFakeBoard(FakeBoard):
    """A software board that stores keys and scores them with verif.model.MacroModel."""
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from hdl.config import MacroConfig
        from verif.model import MacroModel
        identity = self.identity
        self.model = MacroModel(MacroConfig(d=identity.d, bits=identity.bits,
                                            context=identity.context))

    def _answer(self, command, payload):
        from verif.model import Query, Write
        d = self.identity.d
        if command == Command.WRITE_KEY:
            size = 2 + 2 * d
            for offset in range(0, len(payload), size):
                slot, *data = struct.unpack_from(f"<H{d}H", payload, offset)
                self.model.execute(Write(slot, tuple(data)))
        elif command == Command.QUERY:
            first, last, *data = struct.unpack_from(f"<HH{d}H", payload)
            beats = self.model.execute(Query(first, last, tuple(data)))
            self.scores = [beat.value for beat in beats]
        super()._answer(command, payload)

    def _send_scores(self, slots):
        payload = bytes([1]) + b"".join(struct.pack("<HI", slot, value)
                                        for slot, value in zip(slots, self.scores))
        self._reply(Reply.SCORES, payload)


def test_selftest_against_golden_board(capsys):
    from argparse import Namespace
    from fpga.host import _selftest
    board = Board(GoldenFakeBoard(context=6, max_payload=2048, scores_per_frame=16))
    assert _selftest(board, Namespace(seed=3, queries=2)) == 0
    assert "12 of 12 scores bit-exact" in capsys.readouterr().out


# -- link parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("clk_hz, baud, divisor", [
    (75e6, 3_000_000, 25),
    (100e6, 3_000_000, 33),
    (12e6, 3_000_000, 4),
    (25e6, 115_200, 217),
])
def test_baud_divisor(clk_hz, baud, divisor):
    from fpga.uart import baud_divisor
    assert baud_divisor(clk_hz, baud) == divisor


@pytest.mark.parametrize("clk_hz, baud, message", [
    (25e6, 3_000_000, r"^a 25 MHz clock divided by 8 gives 3125000 baud, \+4\.17% from the "
                      r"requested 3e\+06; the error must be within 2%"),
    (10e6, 3_000_000, r"^baud rate 3e\+06 needs a clock of at least 4 times the baud rate, "
                      r"not 10 MHz$"),
    (75e6, 0, r"^baud must be positive, not 0$"),
])
def test_baud_divisor_rejects(clk_hz, baud, message):
    from fpga.uart import baud_divisor
    with pytest.raises(ValueError, match=message):
        baud_divisor(clk_hz, baud)


def test_cli_identify_over_pty(capsys):
    """Run ``python -m fpga.host identify`` through pyserial on a pseudo-terminal."""
    pytest.importorskip("serial")
    import os
    import threading
    from fpga.host import main

    controller, terminal = os.openpty()
    fake = FakeBoard(context=64, max_payload=2048, scores_per_frame=16)

    def serve():
        request = b""
        while len(request) < 4:
            request += os.read(controller, 4 - len(request))
        fake.write(request)
        os.write(controller, fake.read(1000))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        status = main(["--port", os.ttyname(terminal), "--timeout", "5", "identify"])
    finally:
        server.join(timeout=5)
        os.close(controller)
        os.close(terminal)
    assert status == 0
    output = capsys.readouterr().out
    assert "context: 64" in output
    assert "max_payload: 2048" in output
