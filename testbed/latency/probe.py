"""`testbed probe-latency TOPOLOGY [--json]`: does each node feel as slow as the topology says?

Boots the topology in emulated mode (TCG, one thread or with --mttcg one per vCPU, latency plugin),
calibrates once per host and image and trims the delays once per topology
(both cached; the cached trim is measured again in every boot and fitted again where
the host has drifted from it), then runs a pointer chase and a store loop bound to each node
(numactl --membind=N, on the CPU node's fastest vCPUs) and reports per node the
target and measured read and write latencies and the largest error of the
slow/fast ratios.  Measured figures are what the
guest feels, k times the target (k absorbs TCG's own cost); ratios are the
claim.  A topology whose nodes differ by initiator (two-socket) is probed under
--mttcg from a CPU of each initiator, every node's ratio taken against the node
fastest from that initiator (its local one).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from .. import host, image
from ..topology import Topology, load, resolve
from . import calibrate, trim
from .emulated import CacheModel, EmulatedMachine, Route, probe_cpus


@dataclass
class NodeResult:
    node: int
    target_read_ns: int
    target_write_ns: int
    measured_read_ns: float = 0.0
    measured_write_ns: float = 0.0


@dataclass
class ProbeResult:
    topology: str
    nodes: list[NodeResult]
    reference: int

    def ratios(self) -> dict[int, dict[str, tuple[float, float]]]:
        """{node: {"read"|"write": (target ratio, measured ratio)}} against the reference node."""
        ref = next(n for n in self.nodes if n.node == self.reference)
        return {n.node: {"read": (n.target_read_ns / ref.target_read_ns, n.measured_read_ns / ref.measured_read_ns),
                         "write": (n.target_write_ns / ref.target_write_ns,
                                   n.measured_write_ns / ref.measured_write_ns)}
                for n in self.nodes if n.node != self.reference}

    @property
    def ratio_error_max(self) -> float:
        errors = [abs(measured / target - 1) for kinds in self.ratios().values() for target, measured in kinds.values()]
        return max(errors, default=0.0)

    def nodes_json(self) -> list[dict]:
        """Per node: targets and what was measured."""
        return [{"node": n.node, "target_read_ns": n.target_read_ns, "target_write_ns": n.target_write_ns,
                 "measured_read_ns": round(n.measured_read_ns, 1),
                 "measured_write_ns": round(n.measured_write_ns, 1)} for n in self.nodes]

    def to_json(self) -> dict:
        """The documented shape, exactly."""
        return {"topology": self.topology, "nodes": self.nodes_json(), "ratio_error_max": round(self.ratio_error_max, 4)}


@dataclass
class InitiatorsResult:
    """A machine that feels initiators apart: per initiator (a CPU node), every node as felt from its CPUs."""

    topology: str
    initiators: dict[int, ProbeResult]  # reference: the node fastest from that initiator
    cpus: dict[int, list[int]]  # the vCPUs each initiator's probes ran on

    @property
    def ratio_error_max(self) -> float:
        return max((r.ratio_error_max for r in self.initiators.values()), default=0.0)

    def to_json(self) -> dict:
        """The documented shape (README, "Multi-threaded TCG"): per initiator its nodes and ratios."""
        return {"topology": self.topology, "initiators": [_initiator_json(i, r, self.cpus[i])
                                                          for i, r in sorted(self.initiators.items())],
                "ratio_error_max": round(self.ratio_error_max, 4)}


def _initiator_json(initiator: int, result: ProbeResult, cpus: list[int]) -> dict:
    ratios = [{"node": node, **{kind: [round(target, 4), round(measured, 4)]
                                for kind, (target, measured) in kinds.items()}}
              for node, kinds in sorted(result.ratios().items())]
    return {"initiator": initiator, "cpus": cpus, "reference": result.reference, "nodes": result.nodes_json(),
            "ratios": ratios, "ratio_error_max": round(result.ratio_error_max, 4)}


def measure_nodes(machine: EmulatedMachine, targets: dict[int, tuple[int, int]], repeats: int) -> ProbeResult:
    """Median chase and store figures per node, runs interleaved across nodes (see `calibrate.felt`)."""
    felt = calibrate.felt(machine, sorted(targets), repeats)
    nodes = [NodeResult(node, t_r, t_w, *felt[node]) for node, (t_r, t_w) in sorted(targets.items())]
    return ProbeResult(machine.topology.name, nodes, calibrate.reference_node(machine.topology))


def measure_initiators(machine: EmulatedMachine, targets: dict[Route, tuple[int, int]],
                       repeats: int) -> InitiatorsResult:
    """Median chase and store figures per (initiator, node), from a CPU of each initiator, all runs interleaved."""
    felt = calibrate.felt(machine, sorted(targets), repeats)
    results = {}
    for initiator in sorted({i for i, _ in targets}):
        mine = {node: t for (i, node), t in targets.items() if i == initiator}
        nodes = [NodeResult(node, t_r, t_w, *felt[(initiator, node)]) for node, (t_r, t_w) in sorted(mine.items())]
        reference = min(mine, key=lambda n: (mine[n][0], n))
        results[initiator] = ProbeResult(machine.topology.name, nodes, reference)
    return InitiatorsResult(machine.topology.name, results,
                            {i: probe_cpus(machine.topology, i) for i in results})


def probe_latency(topology_name: str, json_output: bool = False, *, repeats: int = calibrate.REPEATS,
                  recalibrate: bool = False, mttcg: bool = False,
                  console: Console | None = None) -> ProbeResult | InitiatorsResult:
    """Boot `topology_name` in emulated mode, measure every node (from each initiator where the machine
    feels them apart), print a table or JSON; return the result."""
    console = console or Console(stderr=True)
    topo: Topology = load(resolve(topology_name))
    calibrate.targets(topo)  # no HMAT latencies: fail before any boot
    if topo.initiators_differ and not mttcg:
        console.print(f"[yellow]{topo.name}: its nodes differ by initiator, which only --mttcg makes felt; "
                      "without it every node is felt at its nearest initiator's figures[/yellow]")
    host.ensure()
    img = image.ensure(console)
    with console.status(f"booting {topo.name} in emulated latency mode (TCG, latency plugin)"):
        # Paced cores feel memory latency only beside a TCG thread per vCPU.
        machine = EmulatedMachine(topo, img, cache=CacheModel(), mttcg=mttcg or topo.heterogeneous_cores).__enter__()
    try:
        targets = calibrate.machine_targets(machine)
        with console.status("calibrating against TCG's own speed (once per host and image)"):
            cal = calibrate.ensure(machine, force=recalibrate)
        with console.status("trimming the delays against what each node feels (checked every boot)"):
            trimmed = trim.ensure(machine, cal, targets, force=recalibrate)
        what = "(initiator, node) pairs" if machine.per_initiator else "nodes"
        with console.status(f"probing {len(targets)} {what} ({repeats} runs each)"):
            result = measure_initiators(machine, targets, repeats) if machine.per_initiator \
                else measure_nodes(machine, targets, repeats)
    finally:
        machine.close()
    _print(result, cal.scale(targets), cal, trimmed, json_output, console)
    return result


def _print(result: ProbeResult | InitiatorsResult, k: float, cal: calibrate.Calibration, trimmed: trim.Trim,
           json_output: bool, console: Console) -> None:
    if json_output:
        print(json.dumps(result.to_json(), indent=2))
        return
    table = Table(title=f"{result.topology}: felt = k x target, k = {k:.2f} (TCG's own cost per access: "
                        f"{cal.base_read_ns:.0f} ns read, {cal.base_write_ns:.0f} ns write)")
    per_initiator = result.initiators if isinstance(result, InitiatorsResult) else {None: result}
    columns = ("node", "target r ns", "target w ns", "measured r ns", "measured w ns", "ratio r (want)",
               "ratio w (want)")
    for column in ("from", *columns) if isinstance(result, InitiatorsResult) else columns:
        table.add_column(column, justify="right")
    for initiator, one in per_initiator.items():
        for row in _rows(one):
            table.add_row(*([] if initiator is None else [f"node {initiator}"]), *row)
    out = Console(width=max(Console().width, 110))
    out.print(table)
    out.print(f"delays within {trimmed.error * 100:.1f} % of k x target after {trimmed.rounds} trim round(s) "
              "in this boot")
    out.print(f"largest ratio error: {result.ratio_error_max * 100:.1f} %")


def _rows(result: ProbeResult) -> list[tuple[str, ...]]:
    """Table cells per node: targets, measured figures, ratios against the reference (want in brackets)."""
    ratios = result.ratios()
    rows = []
    for n in result.nodes:
        r = ratios.get(n.node)
        cells = (f"{r['read'][1]:.2f} ({r['read'][0]:.2f})", f"{r['write'][1]:.2f} ({r['write'][0]:.2f})") \
            if r else ("reference", "reference")
        rows.append((str(n.node), str(n.target_read_ns), str(n.target_write_ns), f"{n.measured_read_ns:.1f}",
                     f"{n.measured_write_ns:.1f}", *cells))
    return rows


def cmd_probe_latency(args: argparse.Namespace) -> int:
    probe_latency(args.topology, args.json, repeats=args.repeats, recalibrate=args.recalibrate, mttcg=args.mttcg)
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topology")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--repeats", type=int, default=calibrate.REPEATS, help="runs per node and kind (median)")
    parser.add_argument("--recalibrate", action="store_true", help="measure TCG's speed again, ignoring the cache")
    parser.add_argument("--mttcg", action="store_true", help="a TCG thread per vCPU (calibrated apart)")
    parser.set_defaults(func=cmd_probe_latency)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `testbed probe-latency` on the testbed command's subparsers."""
    _add_arguments(sub.add_parser("probe-latency", help="boot with the latency plugin and measure each node"))


def main(argv: list[str] | None = None) -> int:
    """CLI: probe-latency TOPOLOGY [--json] [--repeats N] [--recalibrate] [--mttcg]."""
    parser = argparse.ArgumentParser(prog="testbed probe-latency", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
