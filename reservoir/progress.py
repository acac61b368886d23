"""Progress for long work: a bar on a terminal, sparse log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType

from tqdm import tqdm

log = logging.getLogger("reservoir.progress")


def on_terminal() -> bool:
    return sys.stderr.isatty()


@dataclass
class Progress:
    """Counts work done out of `total`; use as a context manager."""

    description: str
    total: int | None = None
    unit: str = "it"
    unit_scale: bool = False
    log_every_s: float = 10.0
    _bar: tqdm | None = field(init=False, default=None)
    _done: int = field(init=False, default=0)
    _last_log: float = field(init=False, default=0.0)

    def __enter__(self) -> Progress:
        if on_terminal():
            self._bar = tqdm(
                total=self.total, desc=self.description, unit=self.unit, unit_scale=self.unit_scale, leave=False
            )
        self._last_log = time.monotonic()
        return self

    def update(self, n: int = 1) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            of = f"/{self.total}" if self.total is not None else ""
            log.info("%s: %d%s %s", self.description, self._done, of, self.unit)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()


def configure_logging(verbose: int = 0) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
