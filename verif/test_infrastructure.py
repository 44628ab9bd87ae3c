"""Unit tests of the regression's own parts: payload packing, model, scoreboard, build helpers.

These run without a simulator.
"""

import random
import re
import subprocess

import pytest
import torch

from golden.bitexact import build_table, encode_keys, score_bits
from golden.numerics import FLOAT32_NAN
from golden.signs import signs_from_seed
from hdl.config import MacroConfig
from verif import objcache, tools
from verif.configs import config_from_dict, config_to_dict
from verif.model import (BAD_RANGE, BAD_SLOT, MacroModel, Query, ScoreBeat, Scoreboard,
                         ScoreMismatch, SignLoad, Write, query_slots)
from verif.streams import PayloadFormat
from verif.test_macro import flip_score_index_bit
from verif.tools import icarus_compatible
from verif.vectors import gaussian_vectors

SEED = 20240611


def small_config(**kwargs):
    fields = dict(d=16, bits=3, context=50)
    fields.update(kwargs)
    return MacroConfig(**fields)


def golden_scores(config, keys, query, signs_at_write, signs_at_query):
    """Score ``query`` against ``keys`` with golden.bitexact directly, one row per key."""
    rows = [encode_keys(torch.tensor([k]), config.dp, s) for k, s in zip(keys, signs_at_write)]
    table = build_table(torch.tensor(query), config.dp, signs_at_query)
    return [int(score_bits(table, row, config.dp)[0]) for row in rows]


@pytest.mark.parametrize("first, last, expected", [
    (0, 49, list(range(50))),
    (7, 7, [7]),
    (48, 1, [48, 49, 0, 1]),
    (10, 9, list(range(10, 50)) + list(range(10))),
])
def test_query_slots_order(first, last, expected):
    assert query_slots(first, last, 50) == expected


def test_query_slots_count_formula():
    rng = random.Random(SEED)
    for _ in range(200):
        context = rng.randrange(1, 70)
        first, last = rng.randrange(context), rng.randrange(context)
        assert len(query_slots(first, last, context)) == (last - first) % context + 1


@pytest.mark.parametrize("beat_elems", [1, 4, 16])
def test_payload_round_trip(beat_elems):
    config = small_config(beat_elems=beat_elems)
    fmt = PayloadFormat(config)
    rng = random.Random(SEED)
    data = tuple(rng.getrandbits(16) for _ in range(16))

    write = Write(slot=33, data=data)
    words = fmt.write_beats(write, rng)
    assert len(words) == 16 // beat_elems
    assert all(word < 1 << fmt.write_width for word in words)
    assert fmt.parse_write(words) == write

    query = Query(first=49, last=2, data=data)
    words = fmt.query_beats(query, rng)
    assert all(word < 1 << fmt.query_width for word in words)
    assert fmt.parse_query(words) == query


def test_payload_field_positions():
    config = small_config(beat_elems=16)
    fmt = PayloadFormat(config)
    data = tuple(range(1, 17))
    word = fmt.write_beats(Write(slot=5, data=data))[0]
    assert word & 0x3F == 5
    assert (word >> 6) & 0xFFFF == 1
    assert (word >> (6 + 16 * 15)) & 0xFFFF == 16
    word = fmt.query_beats(Query(first=3, last=4, data=data))[0]
    assert word & 0x3F == 3
    assert (word >> 6) & 0x3F == 4
    assert (word >> 12) & 0xFFFF == 1
    score = 17 | (0x3F800000 << 6) | (1 << 38)
    assert fmt.parse_score(score) == ScoreBeat(slot=17, value=0x3F800000, last=1)


def test_model_unwritten_slots_score_zero():
    config = small_config()
    model = MacroModel(config)
    query = gaussian_vectors(random.Random(SEED), config, 1)[0]
    beats = model.execute(Query(first=0, last=49, data=query))
    assert [b.slot for b in beats] == list(range(50))
    assert all(b.value == 0 for b in beats)
    assert [b.last for b in beats] == [0] * 49 + [1]


def test_model_matches_golden_with_sign_loads():
    config = small_config(runtime_signs=True)
    rng = random.Random(SEED)
    keys = gaussian_vectors(rng, config, 3)
    query = gaussian_vectors(rng, config, 1)[0]
    other = signs_from_seed(16, 7)
    model = MacroModel(config)
    model.execute(Write(slot=4, data=keys[0]))
    model.execute(SignLoad(word=sum(1 << i for i, s in enumerate(other) if s < 0)))
    model.execute(Write(slot=5, data=keys[1]))
    beats = model.execute(Query(first=4, last=5, data=query))
    expected = golden_scores(config, keys[:2], query, [list(config.signs), other], other)
    assert [b.value for b in beats] == expected


def test_model_reset_keeps_rows_restores_signs():
    config = small_config(runtime_signs=True)
    rng = random.Random(SEED)
    key, query = gaussian_vectors(rng, config, 2)
    model = MacroModel(config)
    model.execute(Write(slot=9, data=key))
    model.execute(SignLoad(word=0xFFFF))
    model.execute(Write(slot=60, data=key))
    assert model.error == BAD_SLOT
    model.reset()
    assert model.error == 0
    assert model.signs == list(config.signs)
    beats = model.execute(Query(first=9, last=9, data=query))
    signs = list(config.signs)
    assert [b.value for b in beats] == golden_scores(config, [key], query, [signs], signs)


def test_model_out_of_range_query():
    config = small_config()
    model = MacroModel(config)
    beats = model.execute(Query(first=55, last=3, data=(0,) * 16))
    assert beats == [ScoreBeat(slot=55, value=FLOAT32_NAN, last=1)]
    assert model.error == BAD_RANGE


def test_scoreboard_reports_mismatch():
    board = Scoreboard(seed_text=" [seed 123]")
    query = Query(first=2, last=3, data=(0,) * 16)
    board.expect(7, query, [ScoreBeat(2, 0x3F800000, 0), ScoreBeat(3, 0x40000000, 1)])
    assert board.compare(ScoreBeat(2, 0x3F800000, 0)) == 7
    with pytest.raises(ScoreMismatch) as info:
        board.compare(ScoreBeat(3, 0x40400000, 1))
    message = str(info.value)
    assert "slot 3" in message
    assert "query #7 (first 2, last 3)" in message
    assert "0x40000000 (2.0)" in message
    assert "0x40400000 (3.0)" in message
    assert message.endswith("[seed 123]")
    assert board.compared == 1


def test_scoreboard_rejects_extra_beat():
    board = Scoreboard()
    with pytest.raises(ScoreMismatch, match="unexpected score beat"):
        board.compare(ScoreBeat(0, 0, 1))


def test_config_round_trip():
    config = small_config(runtime_signs=True, input_format="bf16", beat_elems=4, read_lanes=8)
    assert config_from_dict(config_to_dict(config)) == config


def test_icarus_trigger_becomes_initial():
    text = ("module m(a);\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$5  = 0;\n"
            "  reg [2:0] state = 3'h0;\n"
            "endmodule\n")
    fixed = icarus_compatible(text)
    assert "  reg \\$auto$verilog_backend.cc:2355:dump_module$5 ;\n" in fixed
    assert "  initial \\$auto$verilog_backend.cc:2355:dump_module$5 = 0;\n" in fixed
    assert "  reg [2:0] state = 3'h0;\n" in fixed


def test_fault_patch_flips_read_data():
    config = small_config()
    text = ("  \\axelram_d16_b3.score  score (\n"
            "    .clk(clk),\n"
            "    .read_data(read_data),\n"
            "    .rst(rst)\n"
            "  );\n")
    patched = flip_score_index_bit(config)(text)
    width = config.dp.row_width
    assert f".read_data(read_data ^ {width}'d1)," in patched
    assert re.sub(rf" \^ {width}'d1", "", patched) == text


def test_fault_patch_needs_score_instance():
    with pytest.raises(ValueError, match="score unit instance"):
        flip_score_index_bit(small_config())("module x; endmodule\n")


def test_objcache_caches_runtime_sources_only(tmp_path, monkeypatch):
    include = tmp_path / "include"
    include.mkdir()
    monkeypatch.setenv(objcache.ROOT_ENV, str(tmp_path))
    runtime = ["c++", "-Os", "-c", "-o", "verilated.o", str(include / "verilated.cpp")]
    design = ["c++", "-Os", "-c", "-o", "Vtop__ALL.o", "Vtop__ALL.cpp"]
    assert objcache._cacheable(runtime) == ((include / "verilated.cpp").resolve(),
                                            tmp_path.joinpath("verilated.o").relative_to(tmp_path))
    assert objcache._cacheable(design) is None
    assert objcache._cacheable(["c++", "-x", "c++-header", "Vtop__pch.h"]) is None


def test_missing_iverilog_names_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tools.SimulatorNotFound, match=r"apt-get install -y iverilog"):
        tools.find_simulator("icarus")


def test_unknown_simulator_rejected():
    with pytest.raises(ValueError, match=r"simulator must be one of icarus, verilator, not 'vcs'"):
        tools.check_simulator_name("vcs")
    with pytest.raises(TypeError):
        tools.check_simulator_name(3)


def wide_multi_driver_wires(vvp_text, limit):
    """Return the widths of Icarus multi-driver concatenations (``.concat8``) above ``limit``.

    Icarus builds one when a wire is assigned piece by piece, and then converts the whole wire
    for every reader whenever one piece changes.
    """
    widths = []
    for match in re.finditer(r"^\S+ \.concat8 \[ ([\d ]+)\]", vvp_text, re.M):
        width = sum(int(part) for part in match.group(1).split())
        if width > limit:
            widths.append(width)
    return widths


def test_icarus_netlist_has_no_wide_piecewise_wire(tmp_path):
    """Every wide payload of the macro is assigned whole, which keeps Icarus fast (layouts.pack).

    With per-field assignments the d = 128 macro ran at 6 clocks per second instead of 250.
    """
    config = MacroConfig(d=16, bits=2, context=8, beat_elems=4, read_lanes=8)
    verilog = tools.generate_verilog(config, tmp_path)
    source = tmp_path / "icarus.v"
    source.write_text(icarus_compatible(verilog.read_text()))
    vvp = tmp_path / "macro.vvp"
    subprocess.run([tools.find_iverilog(), "-g2012", "-o", str(vvp), str(source)], check=True,
                   capture_output=True, text=True)
    text = vvp.read_text()
    assert ".concat" in text, "the netlist has no concatenation at all: the check reads nothing"
    assert wide_multi_driver_wires(text, 64) == []


def test_wide_multi_driver_wires_finds_piecewise_assignments():
    text = ("L_0x1 .concat8 [ 35 2688 0 0], L_0x2, L_0x3;\n"
            "L_0x4 .concat [ 300 300 0 0], L_0x5, L_0x6;\n"
            "L_0x7 .concat8 [ 4 4 0 0], L_0x8, L_0x9;\n")
    assert wide_multi_driver_wires(text, 64) == [2723]
