"""Host side of the plugin's control socket: read and reset counters, change delays, add ranges.

The plugin answers one line per request line.  A harness brackets one
benchmark run with `reset()` and `read()`; the answer is the ground truth of
which node served the run's memory traffic.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

COUNTER_FIELDS = ("accesses", "reads", "writes", "misses", "read_misses", "write_misses", "streamed", "delay_ns")


class ControlError(RuntimeError):
    """The plugin's control socket did not answer as expected."""


@dataclass(frozen=True)
class Counters:
    """One snapshot: per node (key -1 = addresses outside every range) and per vCPU."""

    nodes: dict[int, dict[str, int]]
    vcpus: dict[int, dict[str, int]]
    slept_ns: int
    sleeps: int = 0
    credited_ns: int = 0  # host CPU waits credited against the owed delay instead of slept
    pace: dict[int, dict[str, int]] = field(default_factory=dict)  # per vCPU that ran, on a paced machine
    ran_ns: dict[int, int] = field(default_factory=dict)  # host ns each vCPU held the (single) TCG thread

    @classmethod
    def parse(cls, text: str) -> Counters:
        return cls.from_json(json.loads(text))

    @classmethod
    def from_json(cls, data: dict) -> Counters:
        """From the plugin's JSON (a `read` answer, or one side of a `marks` answer)."""
        return cls(
            nodes={n["node"]: {k: n[k] for k in COUNTER_FIELDS} for n in data["nodes"]},
            vcpus={v["vcpu"]: {k: v[k] for k in COUNTER_FIELDS} for v in data["vcpus"]},
            slept_ns=data["slept_ns"],
            sleeps=data.get("sleeps", 0),
            credited_ns=data.get("credited_ns", 0),
            pace={p["vcpu"]: {k: v for k, v in p.items() if k != "vcpu"} for p in data.get("pace", [])},
            ran_ns={r["vcpu"]: r["ns"] for r in data.get("ran_ns", [])},
        )

    def since(self, earlier: Counters) -> Counters:
        """What was counted between `earlier` and this snapshot of the same plugin (a vCPU or node
        missing from `earlier` had counted nothing then); a pace's permille is this snapshot's."""
        def minus(now: dict, was: dict) -> dict:
            return {k: v if k == "permille" else v - was.get(k, 0) for k, v in now.items()}

        return Counters(nodes={n: minus(c, earlier.nodes.get(n, {})) for n, c in self.nodes.items()},
                        vcpus={v: minus(c, earlier.vcpus.get(v, {})) for v, c in self.vcpus.items()},
                        slept_ns=self.slept_ns - earlier.slept_ns, sleeps=self.sleeps - earlier.sleeps,
                        credited_ns=self.credited_ns - earlier.credited_ns,
                        pace={v: minus(p, earlier.pace.get(v, {})) for v, p in self.pace.items()},
                        ran_ns={v: ns - earlier.ran_ns.get(v, 0) for v, ns in self.ran_ns.items()})

    def to_json(self) -> dict:
        """For results files: string keys, as JSON needs."""
        return {"nodes": {str(k): v for k, v in self.nodes.items()},
                "vcpus": {str(k): v for k, v in self.vcpus.items()}, "slept_ns": self.slept_ns, "sleeps": self.sleeps,
                "credited_ns": self.credited_ns, "ran_ns": {str(k): v for k, v in self.ran_ns.items()}}


class Control:
    """A connection to one running plugin's socket."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.path, self.timeout = Path(path), timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.Lock()  # a sampler thread may read while the harness waits on the guest

    def connect(self, wait: float = 15.0) -> Control:
        """Connect, retrying while QEMU is still loading the plugin."""
        deadline = time.monotonic() + wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
                self._sock = sock
                return self
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise ControlError(f"no latency plugin listening on {self.path}: {exc}") from None
                time.sleep(0.1)

    def request(self, line: str) -> str:
        with self._lock:
            return self._request(line)

    def _request(self, line: str) -> str:
        if self._sock is None:
            self.connect()
        try:
            self._sock.sendall(line.encode() + b"\n")
            while b"\n" not in self._buffer:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ControlError(f"plugin closed the control socket answering {line!r}")
                self._buffer += chunk
        except OSError as exc:
            raise ControlError(f"control socket {self.path}: {exc}") from None
        answer, _, self._buffer = self._buffer.partition(b"\n")
        text = answer.decode()
        if text.startswith("error"):
            raise ControlError(f"plugin refused {line!r}: {text}")
        return text

    def read(self) -> Counters:
        return Counters.parse(self.request("read"))

    def reset(self) -> None:
        """Count from now on, and forget the phase marks."""
        self.request("reset")

    def phase(self) -> Counters | None:
        """What was counted between the guest's two phase marks since the last reset (plugin.c, "Phase
        marks"), or None unless both ran: a program that marks its timed phase gets that phase's
        counters, however long after it the host reads them."""
        marks = json.loads(self.request("marks"))
        if marks["begin"] is None or marks["end"] is None:
            return None
        return Counters.from_json(marks["end"]).since(Counters.from_json(marks["begin"]))

    def timed(self) -> tuple[Counters, Literal["loop", "gate-to-exit"]]:
        """A timed phase's counters and what they span: the marked loop's where the guest marked one since
        the reset, else everything since the reset (the gate) until now (the workload's exit too)."""
        loop = self.phase()
        return (loop, "loop") if loop is not None else (self.read(), "gate-to-exit")

    def flush(self) -> None:
        """Empty the cache model (taken at the guest's next memory access), so a run starts cold."""
        self.request("flush")

    def arm(self) -> None:
        """Start counting and delaying (threads=multi boots unarmed: plugin.c says why)."""
        self.request("arm")

    def set_delay(self, node: int, read_ns: int, write_ns: int, initiator: int | None = None) -> None:
        """A node's delays per miss, from every initiator's vCPUs or from `initiator`'s (threads=multi)."""
        at = "" if initiator is None else f" {int(initiator)}"
        self.request(f"delay {int(node)} {int(read_ns)} {int(write_ns)}{at}")

    def set_miss_cost(self, read_ns: float, write_ns: float) -> None:
        """The emulator's own ns per missed read and write, forgiven from a paced vCPU's pace (plugin.c)."""
        self.request(f"miss_cost {round(read_ns)} {round(write_ns)}")

    def add_range(self, base: int, end: int, node: int) -> None:
        self.request(f"range {base:x} {end:x} {node}")

    def config(self) -> dict:
        return json.loads(self.request("config"))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc_info) -> None:
        self.close()
