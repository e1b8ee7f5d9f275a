"""Progress of a long loop, shown the way its output is read.

On a terminal or in a notebook, a tqdm bar. Elsewhere (a run logged to a file or a pipe), a plain
INFO line each tenth of the way and at least every 30 seconds, so a log holds no carriage returns;
those lines follow logging, so a library user who has not asked for INFO sees none. Nothing at all
where absl's logger is set above INFO: a launcher's `--verbosity=-1`.

    with Progress(num_updates, "agent training", unit="update", initial=step) as bar:
        while ...:
            bar.update(num_steps)
            bar.set_postfix(score=f"{score:.1f}")

    for episode in Progress(num_episodes, "loading", unit="episode").track(episodes):
        ...
"""
import logging as python_logging
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

import tqdm
import tqdm.auto
from absl import logging

LOG_LINES = 10  # log lines over the whole total
LOG_SECONDS = 30.0  # and one at least this often

Item = TypeVar("Item")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (Colab's included), whose output shows tqdm's widget bars."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _hidden() -> bool:
    """absl's logger set above INFO (`--verbosity=-1`); a library user's unset level hides no bar."""
    level = python_logging.getLogger("absl").level
    return level != python_logging.NOTSET and level > python_logging.INFO


class Progress:
    """Counts `total` units (None: unknown) from `initial`, under `desc`. `enabled=False` shows
    nothing, as does absl's logger set above INFO; `leave=False` removes the bar when it closes (a step
    inside a longer stage); `unit_scale` shows counts with SI prefixes (bytes)."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
                 leave: bool = True, unit_scale: bool = False):
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = self._logged = self._initial = initial
        self._postfix = {}
        self._bar = None
        self._logs = False
        self._closed = False
        if enabled and not _hidden():
            if _stderr_is_terminal() or _in_notebook():
                self._bar = tqdm.auto.tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                                           unit_scale=unit_scale, file=sys.stderr)
            else:
                self._logs = python_logging.getLogger("absl").isEnabledFor(python_logging.INFO)
        self._start = self._last_log = time.monotonic()
        self._next_log = self._boundary_after(initial)

    def update(self, n: int = 1) -> None:
        """Counts `n` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._logs and (self.n >= self._next_log or time.monotonic() - self._last_log >= LOG_SECONDS):
            self._log()

    def set_postfix(self, **values) -> None:
        """Figures shown after the count (the latest evaluation, say), from the next update on."""
        self._postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def clear(self) -> None:
        """Takes the bar off the terminal line, so that a log line written next starts a line of its own."""
        if self._bar is not None:
            self._bar.clear()

    def close(self) -> None:
        """Ends the bar; a log ends with the count reached, unless its last line already said it."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._logs and self.n != self._logged:
            self._log()

    def track(self, items: Iterable[Item]) -> Iterator[Item]:
        """Yields `items`, counting one unit as each is done; closes at the end."""
        with self:
            for item in items:
                yield item
                self.update()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    def _boundary_after(self, n: int) -> float:
        """The count at the next tenth of the total past `n` (infinite without a total)."""
        if not self.total:
            return float("inf")
        return -(-(n * LOG_LINES // self.total + 1) * self.total // LOG_LINES)

    def _count(self, value: float) -> str:
        return tqdm.tqdm.format_sizeof(value) if self.unit_scale else str(value)

    def _log(self) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        count = self._count(self.n) + (f"/{self._count(self.total)}" if self.total else "")
        shown = f"{100 * self.n // self.total}% ({count})" if self.total else count
        line = f"{self.desc}: {shown}, {tqdm.tqdm.format_interval(elapsed)}"
        done = self.n - self._initial
        if done > 0 and elapsed > 0:
            line += f", {tqdm.tqdm.format_sizeof(done / elapsed)} {self.unit}/s"
        line += "".join(f", {key}={value}" for key, value in self._postfix.items())
        logging.info("%s", line)
        self._logged, self._last_log = self.n, now
        self._next_log = self._boundary_after(self.n)
