"""Test scenarios of the macro regression, each an ``async`` function of a started :class:`Bench`.

A scenario queues commands and waits for the macro. The bench checks every score beat, the
error flags and the stream rules. The cocotb wrapper drains the macro after each scenario, which
checks that no beat is missing or extra. Workloads scale with :func:`verif.bench.effort`.
"""

import os

from .bench import effort
from .vectors import extreme_vectors, gaussian_vectors, load_real_vectors, random_bit_vectors

REAL_KV_ENV = "AXELRAM_TB_REAL_KV"
"""Environment variable naming the ``.npz`` file of captured keys and queries to replay."""


def scaled(count):
    """Return ``count`` scaled by the effort multiplier (at least 1)."""
    return max(1, round(count * effort()))


def random_range(tb):
    """Return a random valid ``(first, last)``; about a third of them wrap around slot T-1."""
    context = tb.config.context
    return tb.rng.randrange(context), tb.rng.randrange(context)


def slot_space(tb):
    """Return how many slot numbers the slot fields can carry (``2**slot_width``)."""
    return 1 << tb.config.slot_width


def write_some_slots(tb, count, vectors=None):
    """Queue writes of ``count`` random slots (Gaussian keys unless ``vectors`` is given).

    Writes are slow (the norm's square root is bit-serial), so most scenarios rewrite only part
    of the context and rely on the rows that earlier tests left, which the model keeps.
    """
    config = tb.config
    if vectors is None:
        vectors = gaussian_vectors(tb.rng, config, count)
    for key in vectors[:count]:
        tb.write(tb.rng.randrange(config.context), key)


def full_queries_for(tb, scores):
    """Return how many full-range queries give about ``scores`` score beats."""
    return scaled(max(2, scores // tb.config.context))


async def fill_then_score(tb):
    """Score the stored rows, write every slot in random order, then score full and partial ranges."""
    config = tb.config
    context = config.context
    tb.set_traffic(idle=0.1, ready=0.9)
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()

    slots = list(range(context))
    tb.rng.shuffle(slots)
    for slot, key in zip(slots, gaussian_vectors(tb.rng, config, context)):
        tb.write(slot, key)
    await tb.drain()

    for query in gaussian_vectors(tb.rng, config, full_queries_for(tb, 600)):
        tb.query(0, context - 1, query)
    for query in gaussian_vectors(tb.rng, config, scaled(20)):
        tb.query(*random_range(tb), query)


async def interleaved(tb):
    """Offer writes and queries on both streams at once; the macro picks the order."""
    config = tb.config
    tb.set_traffic(idle=0.3, ready=0.7)
    count = scaled(60)
    keys = gaussian_vectors(tb.rng, config, count)
    queries = gaussian_vectors(tb.rng, config, count)
    for key, query in zip(keys, queries):
        tb.write(tb.rng.randrange(config.context), key)
        tb.query(*random_range(tb), query)
        if tb.rng.random() < 0.2:
            await tb.wait_cycles(tb.rng.randrange(1, 40))


async def overwrite(tb):
    """Rewrite a few slots again and again, querying them in between."""
    config = tb.config
    tb.set_traffic(idle=0.2, ready=0.8)
    targets = tb.rng.sample(range(config.context), min(4, config.context))
    for _ in range(scaled(40)):
        slot = tb.rng.choice(targets)
        tb.write(slot, gaussian_vectors(tb.rng, config, 1)[0])
        tb.query(slot, slot, gaussian_vectors(tb.rng, config, 1)[0])
        low, high = min(targets), max(targets)
        tb.query(low, high, gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()
    # The same key into every target, so equal scores prove each overwrite landed.
    key = gaussian_vectors(tb.rng, config, 1)[0]
    for slot in targets:
        tb.write(slot, key)
    await tb.drain()
    tb.query(0, config.context - 1, gaussian_vectors(tb.rng, config, 1)[0])


async def slot_ranges(tb):
    """Query corner ranges: single slots, the full range, wrapping ranges and full wraps."""
    config = tb.config
    context = config.context
    last = context - 1
    ranges = [(0, 0), (last, last), (0, last), (last, 0), (last // 2, last // 2)]
    if context > 1:
        ranges += [(1, 0), (last, 1 % context), (context // 2, context // 2 - 1)]
    for _ in range(scaled(30)):
        ranges.append(random_range(tb))
    for _ in range(scaled(10)):
        first = tb.rng.randrange(context)
        ranges.append((first, (first - 1) % context))
    settings = [dict(), dict(idle=0.4, ready=0.3, burst=0.7)]
    if effort() < 1:
        settings = [tb.rng.choice(settings)]
    for traffic in settings:
        tb.set_traffic(**traffic)
        for (first, last_slot), query in zip(ranges, gaussian_vectors(tb.rng, config, len(ranges))):
            tb.query(first, last_slot, query)
        await tb.drain()


async def backpressure(tb):
    """Run mixed traffic under heavy, bursty back-pressure and long input gaps."""
    config = tb.config
    settings = [dict(idle=0.5, ready=0.2, burst=0.8), dict(idle=0.0, ready=0.5),
                dict(idle=0.8, ready=1.0), dict(idle=0.1, ready=0.05, burst=0.95)]
    for traffic in settings:
        tb.set_traffic(**traffic)
        for _ in range(scaled(8)):
            tb.write(tb.rng.randrange(config.context), gaussian_vectors(tb.rng, config, 1)[0])
            tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
        await tb.drain()


async def reset_mid_query(tb):
    """Reset while scores stream out, while a query is half received, and while scores stall.

    After each reset no beat of the aborted query may appear, the error flags read 0 and the
    stored rows are unchanged.
    """
    config = tb.config
    context = config.context
    write_some_slots(tb, 8)
    await tb.drain()

    # Reset in the middle of the score stream.
    tb.set_traffic(ready=0.5)
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])
    target = tb.sink.accepted + tb.rng.randrange(context)
    await tb.wait_until(lambda: tb.sink.accepted >= target and tb.scoreboard.pending,
                        "part of the score stream")
    await tb.reset()
    await tb.wait_cycles(64)
    tb.set_traffic()
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()

    # Reset between the beats of a query (only possible with several beats per vector).
    if config.beats > 1:
        tb.set_traffic(idle=0.6)
        tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
        await tb.wait_until(lambda: tb.monitor.in_flight == "query", "a half-received query")
        await tb.reset()
        await tb.wait_cycles(64)
        tb.set_traffic()
        tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
        await tb.drain()

    # Reset while the score stream is stalled by back-pressure.
    tb.set_traffic(ready=0.02, burst=0.9)
    tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
    await tb.wait_until(lambda: bool(tb.scoreboard.pending), "the query to be accepted")
    await tb.wait_cycles(tb.rng.randrange(1, 30))
    await tb.reset()
    await tb.wait_cycles(64)
    tb.set_traffic()
    for query in gaussian_vectors(tb.rng, config, 3):
        tb.query(0, context - 1, query)


async def extreme_values(tb):
    """Write and query boundary vectors: extreme magnitudes, subnormals, zeros, infinities, NaNs."""
    config = tb.config
    context = config.context
    cases = extreme_vectors(tb.rng, config)
    gaussian = gaussian_vectors(tb.rng, config, 4)
    tb.set_traffic(idle=0.1, ready=0.8)
    queries = [query for _, query in cases] + gaussian
    # Every extreme key meets every extreme query at full effort; a smaller effort samples the
    # queries, so that the slow simulator still sees every key.
    if effort() < 1:
        queries = tb.rng.sample(queries, max(4, scaled(len(queries))))
    span = min(context, len(cases))
    for start in range(0, len(cases), span):
        group = cases[start:start + span]
        for slot, (_, key) in enumerate(group):
            tb.write(slot, key)
        await tb.drain()
        for query in queries:
            tb.query(0, len(group) - 1, query)
        await tb.drain()
    # Extreme queries against Gaussian keys.
    write_some_slots(tb, scaled(16))
    await tb.drain()
    for query in queries[:len(cases)]:
        tb.query(0, context - 1, query)


async def gaussian_bulk(tb):
    """Score many Gaussian queries over the full range, with a write between every few."""
    config = tb.config
    context = config.context
    tb.set_traffic(idle=0.05, ready=0.85, burst=0.3)
    write_some_slots(tb, scaled(16))
    await tb.drain()
    # A macro that scores fewer keys per clock gets fewer scores, for about the same cycles.
    count = full_queries_for(tb, max(5000, 20000 * config.read_lanes // config.d))
    for i, query in enumerate(gaussian_vectors(tb.rng, config, count)):
        tb.query(0, context - 1, query)
        if i % 4 == 3:
            tb.write(tb.rng.randrange(context), gaussian_vectors(tb.rng, config, 1)[0])
        if i % 16 == 15:
            await tb.wait_until(lambda: len(tb.query_source.queue) < 4 * config.beats,
                                "the query queue to shrink")


async def random_bits(tb):
    """Write and query vectors of uniformly random bit patterns (many NaNs and infinities)."""
    config = tb.config
    tb.set_traffic(idle=0.2, ready=0.7)
    count = scaled(24)
    write_some_slots(tb, count, random_bit_vectors(tb.rng, config, count))
    await tb.drain()
    for query in random_bit_vectors(tb.rng, config, scaled(12)):
        tb.query(*random_range(tb), query)


async def out_of_range(tb):
    """Send writes and queries naming slots >= T; check the error flags and the NaN beat."""
    config = tb.config
    context = config.context
    bad_slots = list(range(context, slot_space(tb)))
    tb.set_traffic(idle=0.2, ready=0.8)

    # A dropped write must leave every stored row alone.
    for key in gaussian_vectors(tb.rng, config, scaled(4)):
        tb.write(tb.rng.choice(bad_slots), key)
    await tb.drain()
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()
    await tb.reset()

    ranges = [(tb.rng.choice(bad_slots), tb.rng.randrange(context)),
              (tb.rng.randrange(context), tb.rng.choice(bad_slots)),
              (tb.rng.choice(bad_slots), tb.rng.choice(bad_slots)),
              (slot_space(tb) - 1, slot_space(tb) - 1)]
    for first, last in ranges:
        tb.query(first, last, gaussian_vectors(tb.rng, config, 1)[0])
        tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()
    await tb.reset()

    # Both flags together, mixed with valid traffic.
    for _ in range(scaled(6)):
        tb.write(tb.rng.choice(bad_slots + [tb.rng.randrange(context)]),
                 gaussian_vectors(tb.rng, config, 1)[0])
        tb.query(tb.rng.choice(bad_slots + [0]), tb.rng.randrange(context),
                 gaussian_vectors(tb.rng, config, 1)[0])
    await tb.drain()
    await tb.reset()
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])


async def runtime_signs(tb):
    """Load sign vectors between and during commands; check they apply to later commands only."""
    config = tb.config
    context = config.context
    tb.set_traffic(idle=0.3, ready=0.7)
    for _ in range(scaled(6)):
        signs = [tb.rng.choice((-1, 1)) for _ in range(config.d)]
        tb.load_signs(signs)
        for _ in range(4):
            tb.write(tb.rng.randrange(context), gaussian_vectors(tb.rng, config, 1)[0])
            tb.query(*random_range(tb), gaussian_vectors(tb.rng, config, 1)[0])
        if tb.rng.random() < 0.5:
            await tb.drain()
    await tb.drain()
    # Reset restores the configured signs.
    tb.load_signs([tb.rng.choice((-1, 1)) for _ in range(config.d)])
    await tb.drain()
    await tb.reset()
    write_some_slots(tb, 8)
    tb.query(0, context - 1, gaussian_vectors(tb.rng, config, 1)[0])


async def real_vectors(tb):
    """Replay captured LLM keys and queries from the file named by ``AXELRAM_TB_REAL_KV``.

    Every query is scored against ``T`` keys at effort 1 (writes are slow at d = 64), and
    against more of the file's keys, ``T`` at a time, at a higher effort.
    """
    config = tb.config
    context = config.context
    keys, queries = load_real_vectors(os.environ[REAL_KV_ENV], config.d)
    keys = keys[:scaled(context)]
    tb.set_traffic(idle=0.05, ready=0.9)
    tb.log.info("replaying %d keys and %d queries", len(keys), len(queries))
    for start in range(0, len(keys), context):
        chunk = keys[start:start + context]
        for slot, key in enumerate(chunk):
            tb.write(slot, key)
        await tb.drain()
        for query in queries:
            tb.query(0, len(chunk) - 1, query)
        await tb.drain()


def has_unused_slot_numbers(config):
    """Return True when slot fields can name slots >= T (T is not a power of two, or T is 1)."""
    return config.context < (1 << config.slot_width)


SCENARIOS = (
    # (name, function, whether it applies to a configuration)
    ("fill_then_score", fill_then_score, lambda config: True),
    ("interleaved", interleaved, lambda config: True),
    ("overwrite", overwrite, lambda config: True),
    ("slot_ranges", slot_ranges, lambda config: True),
    ("backpressure", backpressure, lambda config: True),
    ("reset_mid_query", reset_mid_query, lambda config: True),
    ("extreme_values", extreme_values, lambda config: True),
    ("random_bits", random_bits, lambda config: True),
    ("out_of_range", out_of_range, has_unused_slot_numbers),
    ("runtime_signs", runtime_signs, lambda config: config.runtime_signs),
    ("gaussian_bulk", gaussian_bulk, lambda config: True),
    ("real_vectors", real_vectors, lambda config: bool(os.environ.get(REAL_KV_ENV))),
)
"""Every scenario in run order."""
