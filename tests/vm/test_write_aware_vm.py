"""A placement policy enforced in an evaluation (tiny-write-aware: dram-nvm, a hot read-only table and a
hot write-only log, first touch against rules:write-aware).

Checks what the agent's daemon did against the plugin's ground truth: it found as much write-heavy memory
as the log holds and as much read-mostly memory as the table, and the workload's writes moved to DRAM
while its reads moved to NVM. The throughput is printed, not asserted: one repeat of 20 s says little.
"""

from __future__ import annotations

import pytest

from testbed.evaluation import results, runner

pytestmark = pytest.mark.vm

TABLE_MIB, LOG_MIB = 96, 64


@pytest.fixture(scope="module")
def evaluated(run_eval):
    return run_eval("tiny-write-aware", timeout=900)


def _dram_share(run: results.Run, field: str) -> float:
    counts = {n: getattr(c, field) for n, c in run.counters.items() if n in (0, 1)}
    return counts[0] / (counts[0] + counts[1])


def test_the_daemon_classifies_the_log_and_the_table_as_the_workload_uses_them(evaluated):
    default, aware = results.read(evaluated[0])
    assert (default.policy, aware.policy) == ("default", "rules:write-aware")
    assert default.ok and aware.ok, (default.error, aware.error)
    print(f"default {default.figures[runner.STEADY]:,.0f} ops/s, write-aware {aware.figures[runner.STEADY]:,.0f} "
          f"ops/s; enforcer {aware.enforcer}; DRAM share of writes {_dram_share(default, 'writes'):.2f} -> "
          f"{_dram_share(aware, 'writes'):.2f}, of reads {_dram_share(default, 'reads'):.2f} -> "
          f"{_dram_share(aware, 'reads'):.2f}")
    assert default.enforcer == {} and aware.enforcer["rounds"] >= 3
    # Chunks are 2 MiB (huge pages where THP is on): a chunk may straddle the table's end and the log's start.
    assert LOG_MIB - 4 <= aware.enforcer["write_heavy_mib"] <= LOG_MIB + 4, aware.enforcer
    assert TABLE_MIB - 8 <= aware.enforcer["read_mostly_mib"] <= TABLE_MIB + 4, aware.enforcer
    # the table off DRAM, the log's NVM part onto it: at least most of both
    assert aware.enforcer["moved_mib"] >= 0.8 * (TABLE_MIB + LOG_MIB / 2), aware.enforcer


def test_the_workloads_writes_moved_to_dram_and_its_reads_to_nvm(evaluated):
    default, aware = results.read(evaluated[0])
    # First touch: the table in DRAM, most of the log on NVM. The counters span the whole timed phase,
    # the rounds before the moves included.
    assert _dram_share(default, "writes") < 0.5 and _dram_share(default, "reads") > 0.9
    assert _dram_share(aware, "writes") > _dram_share(default, "writes") + 0.3
    assert _dram_share(aware, "reads") < _dram_share(default, "reads") - 0.3
