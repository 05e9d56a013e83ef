"""Progress for long loops: a tqdm bar on a terminal, a readable log line every 10% (or minute) elsewhere.

A bar redrawn with carriage returns turns a log file (CI, ``nohup``, ``> train.log``) into hundreds of
overwritten fragments; when stderr is not a terminal, :func:`progress` prints plain lines instead.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Sequence

__all__ = ["progress"]


class LineProgress:
    """Iterates like tqdm and takes ``set_postfix``; prints one line per ``every`` fraction or ``seconds``."""

    def __init__(self, items: Sequence, desc: str, every: float = 0.1, seconds: float = 60.0, stream=None):
        self.items, self.desc, self.every, self.seconds = items, desc, every, seconds
        self.stream = stream or sys.stderr
        self.postfix: dict[str, str] = {}

    def set_postfix(self, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        total, start = len(self.items), time.perf_counter()
        next_fraction, last_print = self.every, start
        for done, item in enumerate(self.items, 1):
            yield item
            now = time.perf_counter()
            if done == total or done / total >= next_fraction or now - last_print >= self.seconds:
                elapsed = now - start
                eta = elapsed / done * (total - done)
                extra = "".join(f" {k}={v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {done}/{total} ({100 * done / total:.0f}%) {_clock(elapsed)} elapsed, "
                      f"ETA {_clock(eta)}{extra}", file=self.stream, flush=True)
                last_print = now
                while next_fraction <= done / total:
                    next_fraction += self.every


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def progress(items: Iterable, desc: str, enabled: bool = True, unit: str = "batch", total: int | None = None):
    """``items`` wrapped for progress output: tqdm on a terminal, :class:`LineProgress` otherwise."""
    if not enabled:
        return items
    if not sys.stderr.isatty():
        return LineProgress(items if total is None else _Sized(items, total), desc)
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, dynamic_ncols=True, leave=False)


class _Sized:
    """An iterable of known length (a generator with a given total)."""

    def __init__(self, items: Iterable, total: int):
        self.items, self.total = items, total

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return iter(self.items)
