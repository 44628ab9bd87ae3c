"""Progress display on standard error for the long-running model commands."""

import sys
import time


class _LineProgress:
    """Fallback when tqdm is not installed: one rewritten stderr line with count, rate and ETA."""

    def __init__(self, total, desc):
        self.total = total
        self.desc = desc
        self.count = 0
        self.start = time.monotonic()
        self._show()

    def _show(self):
        elapsed = time.monotonic() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        sys.stderr.write(f"\r{self.desc}: {self.count}/{self.total} ({elapsed:.0f} s elapsed, ETA {eta:.0f} s)")
        sys.stderr.flush()

    def update(self, n=1):
        self.count += n
        self._show()

    def set_postfix_str(self, text):
        sys.stderr.write(f" {text}")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
        sys.stderr.flush()


def progress(total, desc, enabled=True):
    """Return a progress bar with ``update(n)``, ``set_postfix_str(text)`` and ``close()``.

    Uses tqdm when it is installed, otherwise a plain stderr line. With ``enabled`` false the
    object does nothing, which keeps test output clean.
    """
    if not enabled:
        return _SilentProgress()
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return _LineProgress(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)


class _SilentProgress:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass
