"""pytest hooks of the macro regression: the session-wide count of compared scores."""

import json
import os

import pytest

from verif.bench import SCORE_LOG_ENV
from verif.tools import SIM_BUILD


_SCORE_LOG = pytest.StashKey()


def pytest_configure(config):
    path = SIM_BUILD / f"score_counts_{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # The simulators inherit this process's environment; each cocotb test appends its count.
    os.environ[SCORE_LOG_ENV] = str(path)
    config.stash[_SCORE_LOG] = path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = config.stash.get(_SCORE_LOG, None)
    if path is None or not path.is_file():
        return
    per_sim = {}
    tests = 0
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        per_sim[entry["sim"]] = per_sim.get(entry["sim"], 0) + entry["scores"]
        tests += 1
    total = sum(per_sim.values())
    detail = ", ".join(f"{sim}: {count}" for sim, count in sorted(per_sim.items()))
    terminalreporter.write_sep("-", "macro regression")
    terminalreporter.write_line(
        f"{total} scores compared bit-exactly in {tests} cocotb tests ({detail})")
    path.unlink()
