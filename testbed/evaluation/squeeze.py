"""Shrink a guest node to a given free size by holding (locked) memory on it.

Under TCG a run must be short, so working sets are small; holding most of
the fast node makes a small working set exceed it all the same, which is
what makes placement matter.  The held pages are mlocked, so no policy
(demotion, NUMA balancing, DAMON, advice) can move them out of the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import guest_binary
from ..ssh import GuestShell
from . import guest_process
from .workload import GUEST_BIN, WORKLOAD_DIR

HOLD_SOURCE = WORKLOAD_DIR / "src" / "hold_memory.c"
GUEST_HOLD = f"{GUEST_BIN}/{Path(HOLD_SOURCE).stem}"
HOLDING_RE = re.compile(r"^holding pid=(\d+) mib=(\d+)$", re.MULTILINE)
_FREE_RE = re.compile(r"^Node\s+(\d+)\s+MemFree:\s+(\d+)\s+kB$", re.MULTILINE)


class SqueezeError(RuntimeError):
    """The node cannot be shrunk as asked."""


def free_mib(meminfo: str, node: int) -> int:
    """MemFree of `node` (MiB) from its /sys/devices/system/node/nodeN/meminfo text."""
    for found, kib in _FREE_RE.findall(meminfo):
        if int(found) == node:
            return int(kib) // 1024
    raise SqueezeError(f"no 'Node {node} MemFree' line in the node's meminfo: {meminfo[:200]!r}")


def node_free_mib(shell: GuestShell, node: int) -> int:
    return free_mib(shell.run(f"cat /sys/devices/system/node/node{node}/meminfo").stdout, node)


@dataclass
class Squeeze:
    """Memory held on `node` by a guest process, until `release()`."""

    node: int
    held_mib: int
    proc: guest_process.GuestProcess | None

    def release(self) -> None:
        if self.proc is not None:
            guest_process.stop(self.proc)
            self.proc = None


def squeeze(shell: GuestShell, node: int, leave_mib: int, timeout: float = 600) -> Squeeze:
    """Hold memory on `node` so that about `leave_mib` stays free (nothing held if it is already that small)."""
    hold = node_free_mib(shell, node) - leave_mib
    if hold <= 0:
        return Squeeze(node, 0, None)
    guest_binary.install(shell, HOLD_SOURCE, GUEST_HOLD)
    proc = guest_process.GuestProcess(shell, f"hold-node{node}")
    guest_process.start(proc, f"numactl --membind={node} {GUEST_HOLD} {hold}", gated=False)
    try:
        proc.pid = int(guest_process.wait_output(proc, HOLDING_RE, timeout).group(1))
    except guest_process.GuestProcessError as exc:
        raise SqueezeError(f"cannot hold {hold} MiB on node {node}: {exc}") from None
    return Squeeze(node, hold, proc)
