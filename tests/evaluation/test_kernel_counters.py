"""What the kernel did in a run: vmstat deltas and its policy threads' CPU time, from one guest command's output."""

from __future__ import annotations

import pytest

from testbed.evaluation import kernel_counters

BEFORE = """nr_free_pages 1000
numa_hint_faults 10
numa_pages_migrated 0
pgpromote_success 0
pgdemote_kswapd 5
pgmigrate_success 3
workingset_refault_anon 99
pageoutrun 2
pgscan_kswapd 0
pgscan_direct 7
pgsteal_kswapd 0
 TLB:         10         20   TLB shootdowns
 CAL:          5          5   Function call interrupts
thread 41 (kswapd0) S 2 0 0 0 -1 2129984 0 0 0 0 7 3 0 0 20 0 1 0 61 0 0
"""
AFTER = """nr_free_pages 10
numa_hint_faults 5010
numa_pages_migrated 700
pgpromote_success 700
pgdemote_kswapd 905
pgmigrate_success 1603
workingset_refault_anon 120
pageoutrun 6
pgscan_kswapd 101492
pgscan_direct 9
pgsteal_kswapd 13306
 TLB:       1010       2020   TLB shootdowns
 CAL:          5          6   Function call interrupts
Node 0, zone      DMA
  node_unreclaimable:  0
Node 0, zone    DMA32
  node_unreclaimable:  0
Node 1, zone   Normal
  node_unreclaimable:  1
thread 41 (kswapd0) S 2 0 0 0 -1 2129984 0 0 0 0 57 23 0 0 20 0 1 0 61 0 0
thread 300 (kdamond.0) S 2 0 0 0 -1 2129984 0 0 0 0 120 30 0 0 20 0 1 0 61 0 0
"""


def test_only_the_numa_migration_and_reclaim_counters_are_kept():
    snap = kernel_counters.parse(AFTER)
    assert set(snap.vmstat) == {"numa_hint_faults", "numa_pages_migrated", "pgpromote_success", "pgdemote_kswapd",
                                "pgmigrate_success", "irq_tlb_shootdowns", "irq_function_calls",
                                "pageoutrun", "pgscan_kswapd", "pgsteal_kswapd",  # whether kswapd ran at all
                                "pgscan_direct", "workingset_refault_anon"}  # reclaim, and what came back
    assert "nr_free_pages" not in snap.vmstat
    assert snap.vmstat["irq_tlb_shootdowns"] == 3030  # summed over the CPUs
    assert snap.thread_ticks == {"kdamond": {300: 150}, "kswapd": {41: 80}}


def test_deltas_over_the_timed_phase_and_cpu_seconds_per_thread_kind():
    vmstat, cpu = kernel_counters.delta(kernel_counters.parse(BEFORE), kernel_counters.parse(AFTER))
    assert vmstat["numa_hint_faults"] == 5000 and vmstat["pgpromote_success"] == 700
    assert vmstat["pgdemote_kswapd"] == 900 and vmstat["pgmigrate_success"] == 1600
    assert vmstat["irq_tlb_shootdowns"] == 3000 and vmstat["irq_function_calls"] == 1
    assert vmstat["pageoutrun"] == 4 and vmstat["pgscan_kswapd"] == 101492
    assert vmstat["pgscan_direct"] == 2 and vmstat["workingset_refault_anon"] == 21
    assert cpu == {"kdamond": pytest.approx(1.5), "kswapd": pytest.approx(0.7)}  # kdamond was born in between


def test_a_thread_that_ended_in_between_takes_nothing_away():
    # The daemon's kdamond of an earlier round (pid 290, 2 s of CPU) is gone; the one of a later round ran 0.4 s.
    before = BEFORE + "thread 290 (kdamond.0) S 2 0 0 0 -1 2129984 0 0 0 0 150 50 0 0 20 0 1 0 61 0 0\n"
    after = AFTER.replace(" 120 30 ", " 30 10 ")
    assert kernel_counters.delta(kernel_counters.parse(before), kernel_counters.parse(after))[1]["kdamond"] == \
        pytest.approx(0.4)


def test_snapshot_reads_everything_in_one_guest_command(fake_shell):
    shell = fake_shell({"cat /proc/vmstat": AFTER})
    assert kernel_counters.snapshot(shell).vmstat["pgpromote_success"] == 700
    assert len(shell.commands) == 1


def test_nodes_kswapd_gave_up_on_are_read_from_zoneinfo():
    assert kernel_counters.parse(AFTER).hopeless == (1,)
    assert kernel_counters.parse(BEFORE).hopeless == ()


def test_huge_pages_per_node_are_read_apart_from_the_zoneinfo_headings():
    text = AFTER + "Node 0 AnonHugePages:    296960 kB\nNode 1 AnonHugePages:         0 kB\n"
    snap = kernel_counters.parse(text)
    assert snap.huge_kib == {0: 296960, 1: 0}
    assert snap.hopeless == (1,)  # the meminfo lines are not taken for zone headings
    assert kernel_counters.parse(AFTER).huge_kib == {}
