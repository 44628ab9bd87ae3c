"""Compiler wrapper that reuses Verilator's run-time library objects across model builds.

Verilator's makefiles put ``$(OBJCACHE)`` in front of every compiler command (it is meant for
ccache). The regression sets it to ``python -m verif.objcache`` with the cache folder in
``AXELRAM_OBJCACHE``. A command that compiles a source from Verilator's ``include`` folder (the
run-time library, the same for every design) is cached under a hash of the whole command line
and of the source file's size and time. Every other command runs unchanged.

Usage: ``python -m verif.objcache <compiler> <arguments...>``
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE_ENV = "AXELRAM_OBJCACHE"
"""Environment variable naming the cache folder."""

ROOT_ENV = "VERILATOR_ROOT"


def _cacheable(argv):
    """Return ``(source, output)`` if ``argv`` compiles a run-time library file, else ``None``."""
    if "-c" not in argv or "-o" not in argv:
        return None
    root = os.environ.get(ROOT_ENV)
    if not root:
        return None
    include = Path(root).resolve() / "include"
    output = Path(argv[argv.index("-o") + 1])
    sources = [Path(a) for a in argv if a.endswith(".cpp")]
    if len(sources) != 1 or output.suffix != ".o":
        return None
    source = sources[0].resolve()
    if source.parent != include:
        return None
    return source, output


def main(argv):
    if not argv:
        sys.exit("usage: python -m verif.objcache <compiler> <arguments...>")
    cache = os.environ.get(CACHE_ENV)
    target = _cacheable(argv) if cache else None
    if target is None:
        sys.exit(subprocess.run(argv).returncode)

    source, output = target
    stat = source.stat()
    key = hashlib.sha256("\0".join(argv + [str(stat.st_size), str(stat.st_mtime_ns)])
                         .encode()).hexdigest()[:20]
    entry = Path(cache) / f"{output.stem}-{key}"
    depfile = output.with_suffix(".d")

    if (entry / output.name).is_file():
        shutil.copyfile(entry / output.name, output)
        if (entry / depfile.name).is_file():
            shutil.copyfile(entry / depfile.name, depfile)
        return

    result = subprocess.run(argv)
    if result.returncode != 0:
        sys.exit(result.returncode)
    # Write into a private folder first, so a concurrent build never sees half a file.
    staging = Path(cache) / f".{entry.name}.{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output, staging / output.name)
    if depfile.is_file():
        shutil.copyfile(depfile, staging / depfile.name)
    try:
        staging.rename(entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
