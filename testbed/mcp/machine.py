"""The guest one MCP session acts on: booted as usual (latencies advertised through HMAT only), or in
emulated mode (TCG with the latency plugin: slow nodes feel slow, and the plugin counts who served what).

Either way the guest starts as an evaluation run expects it (NUMA balancing and
demotion off), and the fast node may be held down to a given free size so that
a working set small enough for TCG still spills onto the slow node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console

from .. import host, image
from ..evaluation import squeeze
from ..evaluation.runner import fastest_nodes, set_baseline_knobs
from ..latency.control import Control
from ..latency.emulated import Delays, EmulatedMachine
from ..latency.felt import fit
from ..launcher import BootOptions, booted
from ..ssh import GuestShell
from ..topology import Topology
from ..vm import VM

LATENCY_MODES = ("advertised", "emulated")


@dataclass
class Machine:
    """A booted guest and what the tools need to know about it."""

    topology: Topology
    vm: VM
    latency: str                              # one of LATENCY_MODES
    emulated: EmulatedMachine | None = None   # with the plugin, in emulated mode
    delays: Delays = field(default_factory=dict)
    fast_node: int = 0
    held_mib: int = 0

    @property
    def shell(self) -> GuestShell:
        return self.vm.shell

    @property
    def control(self) -> Control | None:
        return self.emulated.control if self.emulated is not None else None

    def delays_off(self) -> None:
        """Set-up runs at TCG speed: only a timed phase feels the latency."""
        if self.emulated is not None:
            self.emulated.set_delays({n: (0, 0) for n in self.delays})

    def delays_on(self) -> None:
        """The topology's latencies on, the cache model emptied, the counters zeroed: a timed phase begins."""
        if self.emulated is not None:
            self.emulated.set_delays(self.delays)
            self.control.flush()
            self.control.reset()


@contextlib.contextmanager
def started(topology: Topology, latency: str, options: BootOptions, console: Console,
            fast_node_free_mib: int | None = None) -> Iterator[Machine]:
    """A prepared guest of `topology` in the given latency mode; shut down on exit."""
    if latency not in LATENCY_MODES:
        raise ValueError(f"latency mode {latency!r}: one of {', '.join(LATENCY_MODES)}")
    fast = fastest_nodes(topology)[0]
    if latency == "emulated":
        host.ensure()
        img = image.ensure(console)
        console.print(f"[dim]booting {topology.name} in emulated mode (TCG and the latency plugin)[/dim]")
        with EmulatedMachine(topology, img, boot_timeout=options.boot_timeout, append=options.append) as em:
            console.print(f"[dim]{topology.name}: SSH ready after {em.vm.boot_seconds:.1f} s; "
                          "calibrating delays (cached after the first time)[/dim]")
            machine = Machine(topology, em.vm, latency, em, fit(em).delays, fast)
            yield from _prepared(machine, fast_node_free_mib)
    else:
        with booted(topology, options, console) as vm:
            yield from _prepared(Machine(topology, vm, latency, fast_node=fast), fast_node_free_mib)


def _prepared(machine: Machine, fast_node_free_mib: int | None) -> Iterator[Machine]:
    set_baseline_knobs(machine.shell)
    machine.delays_off()
    held = squeeze.squeeze(machine.shell, machine.fast_node, fast_node_free_mib) if fast_node_free_mib else None
    machine.held_mib = held.held_mib if held else 0
    try:
        yield machine
    finally:
        if held is not None:
            with contextlib.suppress(Exception):
                held.release()
