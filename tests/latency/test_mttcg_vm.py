"""A real guest under multi-threaded TCG with the latency plugin: armed after boot, each vCPU counted apart."""

from __future__ import annotations

import pytest

from testbed.latency.emulated import EmulatedMachine
from testbed.topology import load, resolve

pytestmark = pytest.mark.vm

SIZE_MIB = 32  # twice the modelled 16 MiB last-level cache: a chase misses on every line
LINES = SIZE_MIB * 1024 * 1024 // 64
# Fixed, uncalibrated delays: this module checks the mechanism, `benchmarks/mttcg.py` the ratios.
DELAYS = {0: (500, 500), 1: (3000, 3000)}


@pytest.fixture(scope="module")
def mttcg_machine(guest_image):
    """dram-cxl (PCI and a CXL window: the memory map changes during boot) with a TCG thread per vCPU."""
    with EmulatedMachine(load(resolve("dram-cxl")), guest_image, delays=DELAYS, mttcg=True) as machine:
        yield machine


def test_the_plugin_arms_once_the_guest_is_up_with_the_cxl_window(mttcg_machine):
    config = mttcg_machine.control.config()
    assert (config["threads"], config["armed"]) == ("multi", True)
    assert "thread=single" not in " ".join(mttcg_machine.vm.argv)  # QEMU's default for x86 is MTTCG
    assert {r.node for r in mttcg_machine.ranges} == {0, 1}
    assert [tuple(r) for r in config["ranges"]] == [(r.base, r.end, r.node) for r in mttcg_machine.ranges]


def test_each_vcpu_is_counted_for_its_own_accesses(mttcg_machine):
    """Under MTTCG a callback gets the vCPU that runs the block: a loop's misses follow the vCPU it is pinned to."""
    control = mttcg_machine.control

    def read_misses(cpu: int) -> dict[int, int]:
        control.reset()
        mttcg_machine.run_chases(1, [cpu], SIZE_MIB)
        return {v: c["read_misses"] for v, c in control.read().vcpus.items()}

    on1, on0 = read_misses(1), read_misses(0)
    # a warm-up and a timed pass, each missing on every line; the shell and sshd add some tens of thousands
    # on either vCPU (77,523 on vCPU 0 once, beside the loop on vCPU 1)
    loop = 2 * LINES
    assert on1[1] >= 0.9 * loop and on0[0] >= 0.9 * loop, (on1, on0)
    assert on1.get(0, 0) < 0.2 * loop and on0.get(1, 0) < 0.2 * loop, (on1, on0)


def test_two_vcpus_chase_at_once_each_feeling_its_node(mttcg_machine):
    control = mttcg_machine.control
    control.reset()
    near = mttcg_machine.run_chases(0, [0, 1], SIZE_MIB)
    far = mttcg_machine.run_chases(1, [0, 1], SIZE_MIB)
    counters = control.read()
    for cpu in (0, 1):
        assert counters.vcpus[cpu]["read_misses"] >= 0.95 * 2 * 2 * LINES, counters.vcpus
        assert far[cpu] > 2 * near[cpu], (near, far)  # 3,000 ns owed per miss against 500
    assert counters.nodes[1]["delay_ns"] >= 0.95 * 2 * 2 * LINES * DELAYS[1][0]
    assert counters.slept_ns > 0
