"""`testbed`: boot topologies, check them, run commands and shells in them."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import advise_command, guest_view, host, image, topology
from .cxl import CxlSetupError
from .evaluation import command as eval_command
from .guest_view import GuestViewError
from .host import HostError
from .image import ImageError
from .latency import calibrate, cores, trim
from .latency import probe as latency_probe
from .latency.emulated import EmulatedMachine
from .launcher import BootOptions, booted, load_topology
from .mcp import command as mcp_command
from .process import Terminated, check_stop, stop_requested, stop_signals
from .qmp import MonitorError
from .report import print_reports
from .ssh import GuestCommandError
from .topology import TopologyError
from .validate import Check, Report, compare, latency_checks, speed_checks
from .vm import BootError

# Errors that end a command with a message instead of a traceback.
EXPECTED_ERRORS = (TopologyError, HostError, ImageError, BootError, CxlSetupError, GuestCommandError,
                   GuestViewError, MonitorError, RuntimeError)

err = Console(stderr=True)


def _boot_options(args: argparse.Namespace) -> BootOptions:
    return BootOptions(accel=args.accel, kernel=args.kernel, initrd=args.initrd, append=args.append,
                       boot_timeout=args.boot_timeout)


def validate_one(name: str, options: BootOptions) -> Report:
    """Boot one topology and compare the guest's view with the file (core speeds too, where they differ)."""
    topo = load_topology(name)
    if topo.heterogeneous_cores:
        return _validate_emulated(topo, options)
    with booted(topo, options, err) as vm:
        seen = guest_view.read(vm.shell)
        return Report(topo.name, vm.accel, vm.boot_seconds, compare(topo, seen))


def _validate_emulated(topo: topology.Topology, options: BootOptions) -> Report:
    """Cores of different speed are felt only in emulated mode: boot with the plugin and time each vCPU.

    Where the file gives latencies (HMAT), the same machine feels them too (a TCG thread per vCPU,
    the memory callbacks armed after boot), and each node's felt ratio is checked as well.
    """
    host.ensure()
    img = image.ensure(err)
    feels_memory = bool(topo.hmat)
    err.print(f"[dim]booting {topo.name} in emulated mode (TCG and the latency plugin pace its slow cores"
              f"{' and delay each node' if feels_memory else ''})[/dim]")
    with EmulatedMachine(topo, img, boot_timeout=options.boot_timeout, append=options.append,
                         mttcg=feels_memory) as machine:
        seen = guest_view.read(machine.vm.shell)
        cores.ensure(machine)  # fitted once per host and image, then cached
        checks = compare(topo, seen) + speed_checks(topo, cores.measure(machine))
        if feels_memory:
            checks += latency_checks(_felt_ratios(machine))
        return Report(topo.name, "tcg+plugin", machine.vm.boot_seconds, checks)


def _felt_ratios(machine: EmulatedMachine) -> dict[int, dict[str, tuple[float, float]]]:
    """Calibrated and trimmed as `testbed probe-latency` does (both cached), then each node probed."""
    targets = calibrate.targets(machine.topology)
    cal = calibrate.ensure(machine)
    trim.ensure(machine, cal, targets)
    return latency_probe.measure_nodes(machine, targets, calibrate.REPEATS).ratios()


def cmd_validate(args: argparse.Namespace) -> int:
    names = args.topologies or topology.available()
    for name in names:  # every file is checked before the first boot
        load_topology(name)
    reports = []
    for name in names:
        try:
            report = validate_one(name, _boot_options(args))
        except (BootError, CxlSetupError, GuestCommandError, GuestViewError) as exc:
            if len(names) == 1:
                raise
            report = Report(name, args.accel, 0.0, [Check("boot", "guest ready", str(exc).splitlines()[0], False)])
        reports.append(report)
        if args.json:
            print(json.dumps(report.to_json()), flush=True)
    if not args.json:
        print_reports(Console(), reports)
    return 0 if all(r.ok for r in reports) else 1


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("testbed exec: give a command after --")
    with booted(load_topology(args.topology), _boot_options(args), err) as vm:
        sys.stdout.flush()
        return vm.shell.stream(shlex.join(command))


def cmd_shell(args: argparse.Namespace) -> int:
    with booted(load_topology(args.topology), _boot_options(args), err) as vm:
        return vm.shell.interactive()


def cmd_image(args: argparse.Namespace) -> int:
    host.ensure()
    img = image.build(err) if args.rebuild else image.ensure(err)
    print(json.dumps({"digest": img.digest, "directory": str(img.directory), "kernel": img.kernel_version}))
    return 0


def cmd_host_setup(_args: argparse.Namespace) -> int:
    host.ensure(install=True)
    print(f"host ready: QEMU {'.'.join(map(str, host.qemu_version()))}")
    return 0


def cmd_list(_args: argparse.Namespace) -> int:
    for name in topology.available():
        topo = load_topology(name)
        kinds = ", ".join(f"{n.id}:{n.kind}{'(cpus)' if n.cpus else ''}" for n in topo.nodes)
        print(f"{name:16} {kinds}")
    return 0


def _add_boot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto probes KVM and falls back to TCG")
    p.add_argument("--kernel", type=Path, help="boot this kernel instead of the image's")
    p.add_argument("--initrd", type=Path, help="initramfs for --kernel (omit if root drivers are built in)")
    p.add_argument("--append", default="", help="extra kernel command-line arguments")
    p.add_argument("--boot-timeout", type=float, default=180.0, help="seconds to wait for SSH")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log each step on stderr (QEMU started, SSH banner, guest commands, shutdown)")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="boot topologies and check what the guest sees")
    v.add_argument("topologies", nargs="*", help="names or files (default: all in topologies/)")
    v.add_argument("--json", action="store_true", help="print one JSON object per topology")
    v.set_defaults(func=cmd_validate)
    e = sub.add_parser("exec", help="boot, run a command in the guest, shut down")
    e.add_argument("topology")
    e.add_argument("command", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_exec)
    s = sub.add_parser("shell", help="boot and open an interactive shell")
    s.add_argument("topology")
    s.set_defaults(func=cmd_shell)
    for sp in (v, e, s):
        _add_boot_args(sp)
    i = sub.add_parser("image", help="build (if needed) and show the guest image")
    i.add_argument("--rebuild", action="store_true")
    i.set_defaults(func=cmd_image)
    sub.add_parser("host-setup", help="install what the host lacks (root, Debian)").set_defaults(func=cmd_host_setup)
    sub.add_parser("list", help="list the topologies").set_defaults(func=cmd_list)
    advise_command.add_parser(sub)
    latency_probe.add_parser(sub)
    eval_command.add_parser(sub)
    mcp_command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verbose:  # the testbed's own steps only: the libraries' retries while a guest boots are noise
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logging.getLogger("testbed").addHandler(handler)
        logging.getLogger("testbed").setLevel(logging.INFO)
    with stop_signals():
        try:
            status = args.func(args)
            check_stop()  # a signal that came while the command was ending still ends it as interrupted
            return status
        except (KeyboardInterrupt, Terminated):
            pass
        except EXPECTED_ERRORS as exc:
            if stop_requested() is None:  # else the error is the interrupt's doing: say what happened instead
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
                return 2
        except Exception as exc:
            if stop_requested() is None:
                raise
            # A signal raised inside a library can leave it inconsistent, so that cleanup then fails
            # (paramiko mid-way through opening a channel): the stop is still what happened.
            err.print(f"(while stopping: {type(exc).__name__}: {escape(str(exc))})", highlight=False)
        stop = stop_requested() or signal.SIGINT  # an interrupt raised before the handlers: Python's own
        err.print("interrupted; guest shut down" if stop == signal.SIGINT else
                  f"terminated by {stop.name}; guest shut down")
        return 130 if stop == signal.SIGINT else 143


if __name__ == "__main__":
    sys.exit(main())
