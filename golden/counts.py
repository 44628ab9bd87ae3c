"""Operation and storage counts of AXELRAM and of an ordinary dot-product cache.

Counts are per query (against ``T`` stored keys) and per key written, for the architecture
this project builds (``"axelram"``), for the counts published with the method
(``"published"``: a general multiplication per table entry, ``d * 2**b`` of them) and for a
conventional FP16 cache that multiplies every stored key with the query (``"dot"``).
Benchmarks compare measured hardware figures with these.
"""

from .numerics import datapath
from .params import check_context

ARCHITECTURES = ("axelram", "published", "dot")


def _csd_adders(constant):
    """Adders of a shift-and-add product by ``constant`` (non-zero digits of its NAF, minus one)."""
    digits, rest = 0, constant
    while rest:
        if rest & 1:
            rest -= 2 - (rest & 3)
            digits += 1
        rest >>= 1
    return max(0, digits - 1)


def operation_counts(d, bits, context, architecture="axelram", input_format="fp16",
                     distribution="gaussian"):
    """Return the operation and storage counts as a JSON-ready dictionary.

    Keys of the result: ``per_query`` and ``per_key_write`` (each with
    ``general_multiplications``, ``constant_multiplications``, ``additions`` and, where they
    apply, ``comparisons``, ``conditional_negations`` and ``square_roots``),
    ``storage_bits_per_key``, and ``multiplication_reduction`` (general multiplications per
    query of the dot product divided by this architecture's).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                         f"not {architecture!r}")
    check_context(context)
    dp = datapath(d, bits, input_format, distribution)
    log2_d = dp.log2_d
    transform_additions = d * log2_d       # d/2 butterflies per stage, two add/sub each
    dot_multiplications = context * d

    if architecture == "dot":
        per_query = {"general_multiplications": dot_multiplications,
                     "constant_multiplications": 0,
                     "additions": context * (d - 1)}
        per_key = {"general_multiplications": 0, "constant_multiplications": 0, "additions": 0}
        storage = 16 * d
    elif architecture == "published":
        per_query = {"general_multiplications": d * (1 << bits) + context,
                     "constant_multiplications": 0,
                     "additions": transform_additions + context * (d - 1)}
        per_key = {"general_multiplications": 0, "constant_multiplications": 0,
                   "additions": transform_additions,
                   "comparisons": d * ((1 << bits) - 1)}
        storage = d * bits + 16
    else:
        table_adders = d * sum(_csd_adders(k) for k in dp.centroid_constants)
        threshold_adders = sum(_csd_adders(g) for g in dp.boundary_constants)
        per_query = {
            "general_multiplications": context,
            "constant_multiplications": d * dp.levels,
            "additions": (transform_additions + table_adders + d * dp.levels
                          + context * (d - 1)),
            "conditional_negations": context * d,
        }
        per_key = {
            "general_multiplications": d,            # the squares of the norm
            "square_roots": 1,
            "constant_multiplications": len(dp.boundary_constants),
            "additions": transform_additions + (d - 1) + threshold_adders,
            "comparisons": d * len(dp.boundary_constants),
        }
        storage = dp.row_width
    return {
        "architecture": architecture,
        "d": d, "bits": bits, "context": context,
        "per_query": per_query,
        "per_key_write": per_key,
        "storage_bits_per_key": storage,
        "multiplication_reduction": dot_multiplications / per_query["general_multiplications"],
    }
