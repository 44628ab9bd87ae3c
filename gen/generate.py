"""Generate the Verilog of one macro and its JSON manifest."""

import json
import logging
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from golden.counts import operation_counts
from golden.signs import signs_to_word
from hdl.macro import build_macro

logger = logging.getLogger(__name__)

PORT_MEANINGS = {
    "clk": "clock; every register updates on its rising edge",
    "rst": "synchronous reset, active high; clears the pipeline and error flags, not stored rows",
    "write__valid": "key-write beat valid",
    "write__ready": "key-write beat accepted when valid and ready are both high",
    "write__payload": "key-write beat {slot, data}: data holds beat_elems 16-bit elements",
    "query__valid": "query beat valid",
    "query__ready": "query beat accepted when valid and ready are both high",
    "query__payload": "query beat {first, last, data}: scores slots first..last (wrapping)",
    "score__valid": "score beat valid",
    "score__ready": "score beat taken when valid and ready are both high",
    "score__payload": "score beat {slot, value, last}: value is an IEEE binary32 pattern",
    "signs__valid": "sign word valid (runtime-sign macros)",
    "signs__ready": "sign word accepted; only while no command is in flight",
    "signs__payload": "sign word, bit i set where s_i = -1",
    "error": "sticky flags {bad_slot, bad_range}, cleared by reset",
}


def _fields(shape):
    """Return the payload fields of a struct layout as ``[{name, lsb, width}]``."""
    fields = []
    if not isinstance(shape, data.StructLayout):
        return fields
    for name, field in shape:
        fields.append({"name": name, "lsb": field.offset, "width": field.width})
    return fields


def describe_ports(macro):
    """Return the macro's Verilog ports in the manifest's form."""
    ports = [
        {"name": "clk", "direction": "input", "width": 1, "meaning": PORT_MEANINGS["clk"]},
        {"name": "rst", "direction": "input", "width": 1, "meaning": PORT_MEANINGS["rst"]},
    ]
    for path, member, _ in macro.signature.flatten(macro):
        name = "__".join(str(part) for part in path)
        shape = member.shape
        width = shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width
        entry = {
            "name": name,
            "direction": "input" if member.flow == wiring.In else "output",
            "width": width,
            "meaning": PORT_MEANINGS.get(name, ""),
        }
        fields = _fields(shape)
        if fields:
            entry["fields"] = fields
        ports.append(entry)
    return ports


def timing(macro):
    """Return latency and throughput figures in clock cycles."""
    config = macro.config
    units = macro.units()
    front = units["convert"].latency
    score = units["score"]
    table_cycles = units["table"].latency_cycles
    pipeline = macro.pipeline_latency_cycles
    return {
        "units": {
            "convert_cycles": front,
            "norm_cycles_per_key": units["norm"].latency_cycles,
            "hadamard_cycles": units["hadamard"].latency_cycles,
            "quantize_cycles_per_key": units["quantize"].latency_cycles,
            "table_build_cycles": table_cycles,
            "score_pipeline_cycles": score.latency_cycles,
        },
        "table_build_cycles": table_cycles,
        "pipeline_latency_cycles": pipeline,
        "query_cycles_formula": "table_build_cycles + pipeline_latency_cycles + "
                                "slots * cycles_per_scored_key, from the query's last input "
                                "beat to its last score beat, both included, when the macro "
                                "was idle and the score stream is never stalled",
        "query_cycles_full_context": table_cycles + pipeline + config.context * score.chunks,
        "cycles_per_scored_key": score.chunks,
        "keys_per_clock": 1 / score.chunks,
        "output_fifo_depth": score.fifo_depth,
    }


def manifest(config, macro, command=None):
    """Return the manifest dictionary of a macro."""
    dp = config.dp
    cb = dp.codebook
    return {
        "name": config.name,
        "generator_command": command,
        "parameters": {
            "d": config.d, "bits": config.bits, "context": config.context,
            "input_format": config.input_format, "distribution": config.distribution,
            "sign_source": "runtime" if config.runtime_signs else config.sign_source,
            "beat_elems": config.beat_elems, "beats_per_vector": config.beats,
            "transform_lanes": config.transform_lanes, "write_lanes": config.write_lanes,
            "table_lanes": config.table_lanes, "read_lanes": config.read_lanes,
            "slot_width": config.slot_width,
        },
        "ports": describe_ports(macro),
        "number_formats": dp.to_dict(),
        "codebook": cb.to_dict(),
        "signs": {
            "runtime_writable": config.runtime_signs,
            "values" if not config.runtime_signs else "reset_values": list(config.signs),
            "word_hex": f"{signs_to_word(config.signs):0{config.d // 4}x}",
        },
        "timing_cycles": timing(macro),
        "read_path_general_multipliers": 1,
        "operation_counts": operation_counts(config.d, config.bits, config.context,
                                             input_format=config.input_format,
                                             distribution=config.distribution),
    }


def generate(config, out_dir, command=None):
    """Write ``<name>.v`` and ``<name>.json`` for ``config`` into ``out_dir``; return both paths.

    Both files are produced in memory first, so a failure writes nothing.
    """
    started = time.monotonic()
    macro = build_macro(config)
    logger.info("elaborating %s", config.name)
    text = verilog.convert(macro, name=config.name, emit_src=False, strip_internal_attrs=True)
    info = manifest(config, macro, command)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = out_dir / f"{config.name}.v"
    manifest_path = out_dir / f"{config.name}.json"
    verilog_path.write_text(text)
    manifest_path.write_text(json.dumps(info, indent=2) + "\n")
    logger.info("wrote %s and %s in %.1f s", verilog_path, manifest_path,
                time.monotonic() - started)
    return verilog_path, manifest_path
