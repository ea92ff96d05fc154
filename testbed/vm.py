"""One QEMU guest: start, wait for SSH, talk QMP and SSH, and always shut down.

Lifecycle: `start()` launches QEMU with the argv from `qemu_argv`;
`wait_ready()` retries SSH until the guest answers (showing the serial log if
it does not); `shutdown()` asks QMP to quit, then SIGTERM, then SIGKILL.  As a
context manager the VM is started and ready inside the block and gone after
it, whatever happens in between; a boot lost to a kernel stall or to a QEMU
abort is tried once more.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self
from uuid import uuid4

from . import cxl, tlb_reach, zones
from .image import GuestImage
from .ports import free_port
from .process import processes_with_arg, signals_deferred, start_child
from .qemu_argv import Accel, BootSpec, build_argv
from .qmp import Monitor, MonitorError
from .ssh import GuestShell
from .topology import Topology

AGENT_DIR = Path(__file__).resolve().parent.parent / "guest-agent"
GUEST_AGENT_PATH = "/opt/llamas-agent"
SERIAL_TAIL_LINES = 40
PANIC = "Kernel panic - not syncing"  # also on the "---[ end Kernel panic" line that closes the report
# An RCU stall report; the kernel repeats it every ~21 s while the stall lasts.
RCU_STALL = re.compile(r"rcu: INFO: rcu_\w+ (?:self-)?detected stall")
# Under multi-threaded TCG a boot can, rarely, hang for good with one vCPU's
# timer never firing (seen in CI, hybrid-cores on a 2-core host): a stall
# reported twice is not a slow host but a lost boot, so boot once more.
STALL_REPORTS = 2
RUNDIR_RE = re.compile(r"^llamas-[a-z0-9][a-z0-9-]*-[0-9a-f]{8}$")  # VM.name
LEFTOVER_AGE_S = 60  # a younger run folder may be a VM's whose QEMU is about to start
BOOT_ATTEMPTS = 2

log = logging.getLogger(__name__)


class BootError(RuntimeError):
    """The guest did not come up; the message carries the serial log's tail."""


class BootLost(BootError):
    """The boot was lost to a hazard of TCG on this host, not to the guest or the topology: boot again."""


class BootStalled(BootLost):
    """The guest kernel reported an RCU stall again (STALL_REPORTS times) while booting: the boot is lost."""


class QemuAborted(BootLost):
    """QEMU failed one of its own assertions (SIGABRT) before SSH came up.

    QEMU 10.0's TCG looks up an MMIO access's memory section in the CPU's own
    copy of the dispatch map, which a memory-map change (the firmware's, early
    in boot) can leave out of step with the map the TLB entry was filled from:
    iotlb_to_section() then fails `section_index < d->map.sections_nb`. Seen
    once in CI, hybrid-cores' four vCPUs booting, before any serial output. The
    race is QEMU's (issue 3040; fixed upstream after 10.0 by reading the map
    from the address space) and is not ours to fix, so one more boot.
    """


class _Stalled(ConnectionError):
    pass


def sweep_leftovers(tmp: Path | None = None) -> list[Path]:
    """Remove the run folders of VMs whose owner was killed outright (SIGKILL leaves it no chance to clean
    up; its QEMU died with it, by PDEATHSIG): folders named as a VM names them, holding QEMU's stderr,
    older than a minute, that no running process names.  Return those removed."""
    gone = []
    for path in Path(tmp or tempfile.gettempdir()).glob("llamas-*"):
        try:
            stale = (RUNDIR_RE.match(path.name) and (path / "qemu.stderr").is_file()
                     and time.time() - path.stat().st_mtime > LEFTOVER_AGE_S and not processes_with_arg(path.name))
        except OSError:  # another sweeper took it first
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


class VM:
    """A guest booted from `image` as machine `topology`."""

    def __init__(self, topology: Topology, image: GuestImage, accel: Accel, *,
                 kernel: Path | None = None, initrd: Path | None = None, append: str = "",
                 qemu: str = "qemu-system-x86_64", boot_timeout: float = 180.0,
                 plugins: tuple[str, ...] = (), tcg_single_thread: bool = True, tlb_reach_ms: int | None = None):
        # One TCG thread unless a caller needs one per vCPU (core pacing): QEMU 10.0's MTTCG can
        # abort in iotlb_to_section when a vCPU reaches MMIO through a TLB entry of an older
        # memory map (seen booting two-socket in CI), and on a 2-core host its vCPU threads
        # starve each other into RCU stalls.
        self.topology, self.image, self.accel = topology, image, accel
        # Accessed bits as on hardware (tlb_reach.py); on by default under TCG, 0 turns it off.
        default_reach = tlb_reach.PERIOD_MS if accel == "tcg" else 0
        self.tlb_reach_ms = default_reach if tlb_reach_ms is None else tlb_reach_ms
        self.boot_timeout = boot_timeout
        # A unique name: it tags the QEMU process so leftovers can be found.
        self.name = f"llamas-{topology.name}-{uuid4().hex[:8]}"
        # Made when QEMU starts, not here: a VM built and never booted (a Ctrl-C before the
        # boot) leaves nothing behind in the temporary folder.
        self._rundir = Path(tempfile.gettempdir()) / self.name
        self.spec = BootSpec(
            kernel=kernel or image.kernel,
            initrd=initrd if kernel else image.initrd,
            rootfs=image.rootfs, ssh_port=free_port(), qmp_socket=self._rundir / "qmp.sock",
            serial_log=self._rundir / "serial.log", accel=accel, name=self.name, append=append, qemu=qemu,
            plugins=plugins, tcg_single_thread=tcg_single_thread,
        )
        self.monitor = Monitor(self.spec.qmp_socket)
        self.shell = GuestShell(self.spec.ssh_port, image.client_key, image.host_key)
        self.process: subprocess.Popen | None = None
        self.boot_seconds: float | None = None
        self._started_at = 0.0

    # ---- lifecycle -----------------------------------------------------

    @property
    def rundir(self) -> Path:
        """Per-VM scratch directory (sockets, logs); made at start, removed at shutdown."""
        return self._rundir

    @property
    def argv(self) -> list[str]:
        return build_argv(self.topology, self.spec)

    def start(self) -> None:
        for path in sweep_leftovers():
            log.info("removed %s: its VM's owner was killed", path)
        self._rundir.mkdir(mode=0o700, exist_ok=True)  # again after a shutdown, for a second boot
        self._started_at = time.monotonic()
        with open(self._rundir / "qemu.stderr", "wb") as stderr:  # QEMU writes to its own copy
            self.process = start_child(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        log.info("%s: QEMU started (pid %d)", self.name, self.process.pid)
        try:
            self.monitor.connect(timeout=15, alive=self.alive)
        except MonitorError as exc:
            raise BootError(f"{self.name}: {exc}\n{self.qemu_stderr()}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _booting(self) -> bool:
        """False once QEMU has exited; raises once the guest kernel panicked or stalled, rather than wait out the timeout."""
        log_text = self.serial_text()
        if PANIC in log_text:
            raise ConnectionError("the guest kernel panicked")
        stalls = len(RCU_STALL.findall(log_text))
        if stalls >= STALL_REPORTS:
            raise _Stalled(f"the guest kernel stalled (RCU stall reported {stalls} times)")
        return self.alive()

    def _aborted(self) -> bool:
        return self.process is not None and self.process.poll() == -signal.SIGABRT

    def wait_ready(self) -> float:
        """Block until SSH answers; return seconds since QEMU started."""
        try:
            self.shell.wait_ready(self.boot_timeout, self._booting)
        except (TimeoutError, ConnectionError) as exc:
            error = BootStalled if isinstance(exc, _Stalled) else QemuAborted if self._aborted() else BootError
            raise error(f"{self.name} did not boot: {exc}\n{self.qemu_stderr()}"
                        f"--- serial log (last {SERIAL_TAIL_LINES} lines) ---\n{self.serial_tail()}") from None
        self.boot_seconds = time.monotonic() - self._started_at
        log.info("%s: SSH ready after %.1f s", self.name, self.boot_seconds)
        return self.boot_seconds

    def prepare(self) -> None:
        """Make the guest the machine its topology describes, and install the agent."""
        self.install_agent()
        if self.topology.cxl_nodes:
            cxl.online_type3_nodes(self.shell, self.topology)
        zones.reserve_dma_as_full_size(self.shell)
        if self.tlb_reach_ms:
            tlb_reach.bound(self.shell, self.tlb_reach_ms)

    def set_tlb_reach(self, period_ms: int) -> None:
        """Run tlb-reach every `period_ms` of host time from now on (0: stop it)."""
        if period_ms:
            tlb_reach.bound(self.shell, period_ms)
        elif self.tlb_reach_ms:
            tlb_reach.stop(self.shell)
        self.tlb_reach_ms = period_ms

    def install_agent(self) -> None:
        """Copy the current guest-agent source in: changing the agent never needs an image rebuild."""
        with tempfile.TemporaryDirectory() as tmp:
            tarball = Path(tmp) / "agent.tar"
            subprocess.run(["tar", "-cf", str(tarball), "--exclude=__pycache__", "-C", str(AGENT_DIR), "."],
                           check=True)
            self.shell.put(tarball, "/tmp/llamas-agent.tar")
        self.shell.run(f"rm -rf {GUEST_AGENT_PATH} && mkdir -p {GUEST_AGENT_PATH} && "
                       f"tar -xf /tmp/llamas-agent.tar -C {GUEST_AGENT_PATH} && rm /tmp/llamas-agent.tar && "
                       f"ln -sf {GUEST_AGENT_PATH}/bin/llamas-agent /usr/local/bin/llamas-agent")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop QEMU: QMP quit, then SIGTERM, then SIGKILL. Idempotent.

        A Ctrl-C or SIGTERM that arrives meanwhile is raised once QEMU is gone, not
        in the middle, where it would skip the escalation.
        """
        with signals_deferred():
            if self.alive():
                log.info("%s: shutting down", self.name)
            try:
                self.shell.close()
                if self.alive():
                    self.monitor.quit(timeout / 2)
            finally:
                if self.process is not None:
                    for escalate in (self.process.terminate, self.process.kill):
                        try:
                            self.process.wait(timeout=timeout / 2)
                            break
                        except subprocess.TimeoutExpired:
                            escalate()
                    self.process.wait()
                self.monitor.close()
                shutil.rmtree(self._rundir, ignore_errors=True)

    def __enter__(self) -> Self:
        for attempt in range(2, BOOT_ATTEMPTS + 1):
            try:
                return self._boot()
            except BootLost as exc:
                log.warning("%s; booting again (attempt %d of %d)", str(exc).splitlines()[0], attempt, BOOT_ATTEMPTS)
        return self._boot()

    def _boot(self) -> VM:
        try:
            self.start()
            self.wait_ready()
            self.prepare()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    # ---- diagnostics ---------------------------------------------------

    def serial_text(self) -> str:
        """The guest's console output so far ('' before QEMU has written any)."""
        try:
            return self.spec.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serial_tail(self, lines: int = SERIAL_TAIL_LINES) -> str:
        text = self.serial_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no serial output)"

    def qemu_stderr(self) -> str:
        path = self._rundir / "qemu.stderr"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return f"--- QEMU stderr ---\n{text}\n" if text else ""
