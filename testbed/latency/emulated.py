"""A guest in `emulated` latency mode: TCG, the latency plugin loaded.

One TCG thread by default; `mttcg=True` gives each vCPU its own (kernel threads
then run beside the workload), with the plugin armed once the guest is up.

`EmulatedMachine` boots the topology with the plugin (ranges from the q35
layout, delays as given), checks the computed ranges against the guest's
SRAT, hands CXL windows to the plugin, and installs the guest probe binary.
Inside the block, `machine.control` reads/resets counters and changes delays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from .. import guest_binary
from ..image import GuestImage
from ..process import signals_deferred
from ..topology import Topology
from ..vm import VM
from . import build, layout
from .control import Control

PROBE_SOURCE = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "latency_probe.c"
GUEST_PROBE = "/usr/local/bin/latency_probe"
# Kernel arguments every emulated guest gets; a caller's `append` adds to them.
# no_timer_check: a slow, loaded emulator can miss the kernel's early IO-APIC timer
# test, which then panics ("IO-APIC + timer doesn't work"); seen here under load.
# clearcpuid=erms,fsrm: with ERMS the kernel zeroes and copies pages with `rep stosb/movsb`,
# which TCG runs a byte at a time, each byte a plugin callback; without it, `rep stosq`:
# first touch of 256 MiB took 10.6 s with ERMS and 1.2 s without, here.
EMULATED_APPEND = "no_timer_check clearcpuid=erms,fsrm"


@dataclass(frozen=True)
class CacheModel:
    """The plugin's last-level cache model. Default: 16 MiB, 64 B lines, 16 ways (a server LLC slice)."""

    size_kib: int = 16 * 1024
    line: int = 64
    ways: int = 16

    def plugin_args(self) -> list[str]:
        return [f"cache_kib={self.size_kib}", f"line={self.line}", f"ways={self.ways}"]


Route = tuple[int, int]  # (initiator, node): a node as felt from the CPUs of one initiator (a CPU node)
DelayKey = int | Route  # a node (from every initiator), or one initiator's view of it
Delays = dict[DelayKey, tuple[int, int]]  # -> (read ns, write ns) owed per miss


class InitiatorError(ValueError):
    """Per-initiator delays where the plugin cannot tell initiators apart (one TCG thread)."""


def key_text(key: DelayKey) -> str:
    """A delay key in JSON and logs: '1' for node 1, '1@0' for node 1 from initiator 0 (the plugin's notation)."""
    return f"{key[1]}@{key[0]}" if isinstance(key, tuple) else str(key)


def parse_key(text: str) -> DelayKey:
    """The inverse of `key_text`."""
    node, at, initiator = text.partition("@")
    return (int(initiator), int(node)) if at else int(node)


def plugin_option(library: Path, socket_path: Path, topology: Topology, delays: Delays,
                  cache: CacheModel, batch_ns: int = 20000, *, mttcg: bool = False, memory: bool = True,
                  initiators: bool = False) -> str:
    """The full `-plugin` value: library, control socket, ranges, delays, cache model, core speeds.

    `mttcg`: QEMU runs a TCG thread per vCPU (the plugin locks its cache model and waits for
    `arm`); `memory=False`: no memory callbacks, core pacing only; `initiators`: each vCPU's
    misses owe its CPU node's delays (needs `mttcg`), which `(initiator, node)` keys set.
    """
    if (initiators or any(isinstance(k, tuple) for k in delays)) and not mttcg:
        raise InitiatorError(f"{topology.name}: delays per initiator need a TCG thread per vCPU (mttcg): under "
                             "one thread the plugin sees the vCPU that translated a block, not the one running it")
    args = [f"sock={socket_path}", f"batch_ns={batch_ns}", *cache.plugin_args()]
    args += ["threads=multi"] if mttcg else []
    args += [] if memory else ["mem=0"]
    args += [r.plugin_arg() for r in layout.ram_ranges(topology)]
    args += initiator_args(topology) if initiators else []
    args += [delay_arg(key, r, w) for key, (r, w) in sorted(delays.items(), key=lambda kv: _order(kv[0]))]
    args += stream_args(topology, cache.line)
    args += speed_args(topology)
    return ",".join([str(library), *args])


def _order(key: DelayKey) -> tuple[int, int]:
    """Every-initiator delays first, so a per-initiator one given beside them is not overwritten."""
    return (key[0] + 1, key[1]) if isinstance(key, tuple) else (0, key)


def delay_arg(key: DelayKey, read_ns: int, write_ns: int) -> str:
    """`delay=NODE:READ:WRITE`, or `delay=NODE:READ:WRITE@INIT` for an (initiator, node) key."""
    initiator, node = key if isinstance(key, tuple) else (None, key)
    at = "" if initiator is None else f"@{initiator}"
    return f"delay={node}:{int(read_ns)}:{int(write_ns)}{at}"


def initiator_args(topology: Topology) -> list[str]:
    """`initiator=VCPU:NODE` for every vCPU off node 0 (the plugin's default): its CPU node is its initiator."""
    return [f"initiator={cpu}:{node.id}" for node in topology.nodes[1:] for cpu in node.cpus]


def stream_args(topology: Topology, line: int) -> list[str]:
    """`stream=NODE:R:W`: the share (ppm) of a miss's delay owed when it continues a sequential stream.

    A prefetched or write-combined line costs the node's transfer time for one line at its
    bandwidth, not its latency: (line / bandwidth) / latency, from the node's HMAT entry.
    """
    args = []
    for node in topology.nodes:
        entry = topology.best_hmat(node)
        if entry is None:
            continue
        read = _ppm(line * 1000 / entry.read_bandwidth_mbps, entry.read_latency_ns)
        write = _ppm(line * 1000 / entry.write_bandwidth_mbps, entry.write_latency_ns)
        args.append(f"stream={node.id}:{read}:{write}")
    return args


def _ppm(transfer_ns: float, latency_ns: int) -> int:
    return min(1_000_000, round(1_000_000 * transfer_ns / latency_ns))


def speed_args(topology: Topology) -> list[str]:
    """Armed at full speed (`speed=VCPU:1000`) for every slow vCPU; none on a uniform machine.

    Pacing needs a TCG thread per vCPU; the memory callbacks run there only with
    `mttcg` (armed after boot, see plugin.c), so without it a machine with cores of
    different speed feels those, not memory latency.  The slow vCPUs boot at full speed and get their paces once the guest is up
    (`nominal_paces`, then the fitted ones of `cores.ensure`): the kernel's
    early SMP bring-up and timer set-up then never wait on a sleeping vCPU.
    """
    if not topology.heterogeneous_cores:
        return []
    return [f"speed={cpu}:1000" for cpu in nominal_paces(topology)]


def nominal_paces(topology: Topology) -> dict[int, int]:
    """{vCPU: permille} straight from the file, for every vCPU slower than full speed."""
    return {cpu: round(speed * 1000) for cpu, speed in topology.cpu_speeds().items() if speed < 1}


def probe_cpus(topology: Topology, initiator: int | None = None) -> list[int]:
    """The vCPUs latency probes run on: the first CPU node's fastest ones, or node `initiator`'s (a paced,
    slower vCPU would add its own sleeps to every figure)."""
    if initiator is not None and not (0 <= initiator < len(topology.nodes) and topology.nodes[initiator].cpus):
        raise InitiatorError(f"{topology.name}: initiator {initiator} is not a node with CPUs")
    cpus = topology.nodes[initiator].cpus if initiator is not None else next(n.cpus for n in topology.nodes if n.cpus)
    fastest = set(topology.fastest_cpus())
    return [c for c in cpus if c in fastest] or cpus


def ns_per_op(line: str) -> float:
    """The ns_per_op figure of one latency_probe line (`mode=chase ns_per_op=123.4 ops=...`)."""
    return float(dict(kv.split("=", 1) for kv in line.split())["ns_per_op"])


class EmulatedMachine:
    """Context manager: a booted, checked guest with the plugin and its control connection.

    `mttcg`: a TCG thread per vCPU, the plugin armed once the guest is up (`mttcg` is then
    True; so it is for cores of different speed, which need it); `feels_memory`: the
    plugin's memory callbacks run (all but a paced machine without `mttcg`).
    """

    def __init__(self, topology: Topology, image: GuestImage, delays: Delays | None = None,
                 cache: CacheModel = CacheModel(), boot_timeout: float = 300.0, plugin: bool = True,
                 tcg_single_thread: bool = True, append: str = "", tlb_reach_ms: int = 0, mttcg: bool = False):
        self.topology, self.image, self.cache = topology, image, cache
        self.delays = dict(delays or {})
        # Pacing cores needs a TCG thread per vCPU; memory latency works under one, or under
        # one per vCPU armed after boot (mttcg).
        self.paces_cores = plugin and topology.heterogeneous_cores
        self.mttcg = mttcg or (not tcg_single_thread and not plugin) or self.paces_cores
        self.feels_memory = plugin and (mttcg or not self.paces_cores)
        # A node slower from one socket than from the other is felt so only with a thread per vCPU.
        self.per_initiator = self.mttcg and self.feels_memory and topology.initiators_differ
        self.vm = VM(topology, image, "tcg", tcg_single_thread=not self.mttcg,
                     append=f"{EMULATED_APPEND} {append}".strip(), boot_timeout=boot_timeout,
                     tlb_reach_ms=tlb_reach_ms)
        # The plugin's control socket lives in the VM's run folder, beside QMP's: made as QEMU
        # starts, removed at its shutdown, whatever interrupts it.
        self.socket_path = self.vm.rundir / "ctl.sock"
        if plugin:
            option = plugin_option(build.ensure(), self.socket_path, topology, self.delays, cache,
                                   mttcg=self.mttcg, memory=self.feels_memory, initiators=self.per_initiator)
            self.vm.spec = replace(self.vm.spec, plugins=(option,))
        self.control: Control | None = Control(self.socket_path) if plugin else None
        self.ranges: list[layout.Range] = []

    @property
    def tlb_reach_ms(self) -> int:
        """tlb-reach's period in this guest, 0 if off (the default here: its flushes cost a slow node's
        accesses more than a fast one's, a miss waits longer so more pages lose their translation
        meanwhile, and the trim then stopped 22.7 % off; README, "Accessed bits")."""
        return self.vm.tlb_reach_ms

    def __enter__(self) -> Self:
        try:
            self.vm.__enter__()
            self._after_boot()
        except BaseException:
            self.close()
            raise
        return self

    def _after_boot(self) -> None:
        dmesg = self.vm.shell.run("dmesg").stdout
        self.ranges = layout.check_against_guest(self.topology, dmesg)
        if self.control is not None:
            self.control.connect()
            if self.topology.cxl_nodes:
                iomem = self.vm.shell.run("cat /proc/iomem").stdout
                for r in layout.cxl_window_ranges(iomem, self.topology):
                    self.control.add_range(r.base, r.end, r.node)
                    self.ranges.append(r)
            if self.mttcg and self.feels_memory:
                self.control.arm()  # the memory map is settled: PCI and the CXL region are set up
        guest_binary.install(self.vm.shell, PROBE_SOURCE, GUEST_PROBE)
        if self.paces_cores:
            self.set_paces(nominal_paces(self.topology))

    def set_delays(self, delays: Delays) -> None:
        """Set each node's delays (from every initiator), or one initiator's for an (initiator, node) key."""
        if not self.per_initiator and any(isinstance(k, tuple) for k in delays):
            raise InitiatorError(f"{self.topology.name}: delays per initiator need mttcg and a topology whose "
                                 f"nodes differ by initiator; got keys {sorted(map(key_text, delays))}")
        for key, (r, w) in sorted(delays.items(), key=lambda kv: _order(kv[0])):
            initiator, node = key if isinstance(key, tuple) else (None, key)
            self.control.set_delay(node, r, w, initiator)
        self.delays = dict(delays)

    def run_probe(self, mode: str, node: DelayKey, size_mib: int = 32, passes: int = 1) -> float:
        """ns per operation of the guest microbenchmark bound to memory `node`, on `probe_cpus`; an
        (initiator, node) key runs it on that initiator's CPUs."""
        initiator, node = node if isinstance(node, tuple) else (None, node)
        cpus = ",".join(map(str, probe_cpus(self.topology, initiator)))
        out = self.vm.shell.run(f"numactl --membind={int(node)} --physcpubind={cpus} "
                                f"{GUEST_PROBE} {mode} {int(size_mib)} {int(passes)}", timeout=600).stdout
        return ns_per_op(out)

    def set_paces(self, pace: dict[int, int]) -> None:
        """Run each vCPU in `pace` at that many thousandths of the emulator's speed."""
        for cpu, permille in pace.items():
            self.control.request(f"speed {int(cpu)} {int(permille)}")

    def run_chases(self, node: int, cpus: list[int], size_mib: int = 32, passes: int = 1) -> dict[int, float]:
        """ns per load of a chase over memory `node`, one pinned to each of `cpus`, all started together."""
        starts = " ".join(f"numactl --membind={int(node)} --physcpubind={int(cpu)} {GUEST_PROBE} chase "
                          f"{int(size_mib)} {int(passes)} > /tmp/chase.{int(cpu)} &" for cpu in cpus)
        self.vm.shell.run(f"{starts} wait", timeout=600)
        out = self.vm.shell.run(" ".join(["cat", *(f"/tmp/chase.{int(cpu)}" for cpu in cpus)])).stdout
        return {cpu: ns_per_op(line) for cpu, line in zip(cpus, out.splitlines(), strict=True)}

    def run_spins(self, millions: dict[int, int]) -> dict[int, float]:
        """ns per step of a register-only loop pinned to each vCPU given, all at once: {vCPU: ns}.

        At once, not in turn: the host's own speed wanders by tens of percent
        from one second to the next here, and loops that run side by side feel
        the same wander, so their ratio holds.
        """
        starts = " ".join(f"taskset -c {int(cpu)} {GUEST_PROBE} spin {int(m)} 1 > /tmp/spin.{int(cpu)} &"
                          for cpu, m in millions.items())
        self.vm.shell.run(f"{starts} wait", timeout=600)
        out = self.vm.shell.run(" ".join(["cat", *(f"/tmp/spin.{int(cpu)}" for cpu in millions)])).stdout
        return {cpu: ns_per_op(line) for cpu, line in zip(millions, out.splitlines(), strict=True)}

    def close(self) -> None:
        """Close the plugin's control connection and shut the guest down (its run folder, the plugin's
        socket with it, goes too); a stop signal meanwhile is raised after both."""
        with signals_deferred():
            if self.control is not None:
                self.control.close()
            self.vm.shutdown()

    def __exit__(self, *exc_info) -> None:
        self.close()
