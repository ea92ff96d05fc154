"""The plugin's per-node misses, read on a fixed tick while a timed phase runs.

A thread of the harness reads the counters over the plugin's control socket
(answered by a thread of QEMU's own), so sampling costs the guest nothing:
no guest command, no vCPU time.
"""

from __future__ import annotations

import threading
import time
from typing import Self

from ..latency.control import Control, ControlError


class Sampler:
    """`with Sampler(control, tick_s) as s:` ... `s.points`: (seconds since start, misses so far per node)."""

    def __init__(self, control: Control, tick_s: float):
        self.control, self.tick_s = control, tick_s
        self.points: list[tuple[float, dict[int, int]]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="counter-sampler", daemon=True)
        self._start = 0.0

    def _sample(self) -> None:
        counters = self.control.read()
        self.points.append((round(time.monotonic() - self._start, 3),
                            {n: c["misses"] for n, c in counters.nodes.items()}))

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.tick_s - (time.monotonic() - self._start) % self.tick_s):
                self._sample()
        except ControlError as exc:  # the run goes on; its series says where it stopped
            self.error = str(exc)

    def __enter__(self) -> Self:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
