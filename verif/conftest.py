"""pytest hooks of the macro regression: background builds and the count of compared scores."""

import json
import logging
import os
import threading

import pytest

from verif import tools
from verif.bench import SCORE_LOG_ENV

logger = logging.getLogger(__name__)

_SCORE_LOG = pytest.StashKey()
_PREBUILDER = pytest.StashKey()


class Prebuilder:
    """Builds the simulation models of the selected tests in a background thread, in test order.

    Each simulator run is single-threaded, so on a machine with two or more cores the next
    model compiles while the current test simulates. A test that needs a model before the
    thread gets to it builds the model itself (``tools.build`` locks each build folder), and a
    background build that fails is left to the test, which reports the error.
    """

    def __init__(self, jobs):
        self.jobs = jobs
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="axelram-prebuild", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        """Skip the builds not yet started and wait for the one in progress."""
        self.stopping.set()
        self.thread.join()

    def _run(self):
        for sim, config in self.jobs:
            if self.stopping.is_set():
                return
            try:
                tools.build(config, sim, waves=tools.waves_requested())
            except Exception as exc:  # the test that needs this build reports the error
                logger.info("background build of %s on %s failed: %s", config.name, sim, exc)


def _prebuild_jobs(items):
    jobs = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        sim, case = params.get("sim"), params.get("case")
        if sim is None or case is None or not hasattr(case, "config"):
            continue
        job = (sim, case.config)
        if job not in jobs:
            jobs.append(job)
    return jobs


def pytest_configure(config):
    path = tools.SIM_BUILD / f"score_counts_{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # The simulators inherit this process's environment; each cocotb test appends its count.
    os.environ[SCORE_LOG_ENV] = str(path)
    config.stash[_SCORE_LOG] = path


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    jobs = _prebuild_jobs(session.items)
    # The first test builds its own model; the thread starts on the second.
    if len(jobs) > 1:
        prebuilder = Prebuilder(jobs[1:])
        session.config.stash[_PREBUILDER] = prebuilder
        prebuilder.start()


def pytest_sessionfinish(session, exitstatus):
    prebuilder = session.config.stash.get(_PREBUILDER, None)
    if prebuilder is not None:
        prebuilder.stop()


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
