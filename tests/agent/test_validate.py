"""Checking hints against the machine (a fixture tree): every refusal names what is wrong."""

from __future__ import annotations

import pytest
from llamas_agent.sysfs import Tree
from llamas_agent.validate import Context, Rejected, _covered, check, margin_kib

from .fixture_tree import build_tree

AGENT = 999
# The workload (pid 300) has (100 + 16385 + 3) 4 KiB pages and 2 huge pages on node 0.
WORKLOAD_NODE0_KIB = (100 + 16385 + 3) * 4 + 2 * 2048


def ctx_for(tree) -> Context:
    return Context(tree, agent_pids=[AGENT])


def rejected(ctx, hint) -> str:
    with pytest.raises(Rejected) as exc:
        check(ctx, hint)
    return str(exc.value)


def migrate(pid=300, src=(0,), dst=(1,)):
    return {"kind": "migrate_pages", "pid": pid, "from_nodes": list(src), "to_nodes": list(dst)}


@pytest.mark.parametrize("hint, phrase", [
    (migrate(pid=1), "pid 1 (init) is never a target"),
    (migrate(pid=2), "pid 2 is a kernel thread"),
    (migrate(pid=4_000_000), "no process with pid 4000000"),
    (migrate(pid=AGENT), f"pid {AGENT} is the agent itself"),
    (migrate(dst=(7,)), "to_nodes: node 7 does not exist (nodes: [0, 1])"),
    (migrate(src=(0, 1), dst=(1,)), "from_nodes and to_nodes overlap"),
    ({"kind": "move_range", "pid": 300, "start": 4096, "length": 1 << 20, "to_node": 1},
     "range 0x1000+0x100000 is not inside pid 300's mappings"),
    ({"kind": "move_range", "pid": 300, "start": 0x7F3A04000000, "length": 0x200000, "to_node": 1},
     "is not inside"),  # runs past the end of the last anonymous mapping into a gap
    ({"kind": "set_affinity", "pid": 300, "cpus": [0, 5]}, "CPU(s) [5] are not online (online: [0, 1])"),
    ({"kind": "set_policy", "pid": 300, "mode": "bind", "nodes": [1]}, "no interface to set another process's"),
    ({"kind": "set_policy", "launch": "x", "mode": "bind", "nodes": [3]}, "nodes: node 3 does not exist"),
    ({"kind": "set_knob", "knob": "weighted_interleave", "value": {"3": 2}}, "names node '3'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_hints_that_do_not_fit_the_machine_are_rejected(tree, hint, phrase):
    assert phrase in rejected(ctx_for(tree), hint)


def test_a_node_without_memory_is_no_target(guest_root):
    node2 = guest_root / "sys/devices/system/node/node2"
    node2.mkdir()
    (node2 / "meminfo").write_text("Node 2 MemTotal:       0 kB\nNode 2 MemFree:        0 kB\n")
    assert "node 2 has no memory" in rejected(ctx_for(Tree(str(guest_root))), migrate(dst=(2,)))


def test_knobs_the_kernel_lacks_are_rejected(tmp_path):
    tree = Tree(str(build_tree(tmp_path, knobs=False)))
    why = rejected(ctx_for(tree), {"kind": "set_knob", "knob": "numa_balancing", "value": 1})
    assert why == "knob numa_balancing is not offered by this kernel"


def test_a_move_must_leave_the_safety_margin_free(tmp_path):
    margin = margin_kib({"mem_total_kib": 1_048_576})
    assert margin == int(1_048_576 * 0.05)
    fits = Tree(str(build_tree(tmp_path / "a", node1_free_kib=WORKLOAD_NODE0_KIB + margin)))
    plan = check(ctx_for(fits), migrate())
    assert plan["need_kib"] == WORKLOAD_NODE0_KIB and plan["before_kib"][0] == WORKLOAD_NODE0_KIB
    tight = Tree(str(build_tree(tmp_path / "b", node1_free_kib=WORKLOAD_NODE0_KIB + margin - 1)))
    why = rejected(ctx_for(tight), migrate())
    assert why == (f"move of {WORKLOAD_NODE0_KIB} KiB does not fit: nodes [1] have {WORKLOAD_NODE0_KIB - 1} KiB "
                   "free beyond their safety margin")


def test_a_document_sees_the_room_its_earlier_moves_make_and_take(tmp_path):
    margin = margin_kib({"mem_total_kib": 1_048_576})
    ctx = ctx_for(Tree(str(build_tree(tmp_path, node1_free_kib=WORKLOAD_NODE0_KIB + margin))))
    free = {n: node["mem_free_kib"] for n, node in ctx.nodes.items()}
    check(ctx, migrate())
    assert ctx.nodes[0]["mem_free_kib"] == free[0] + WORKLOAD_NODE0_KIB
    assert ctx.nodes[1]["mem_free_kib"] == free[1] - WORKLOAD_NODE0_KIB
    # The same move again no longer fits: the first one took node 1's room.
    assert rejected(ctx, migrate()).endswith("nodes [1] have 0 KiB free beyond their safety margin")


def test_ranges_may_span_adjacent_mappings_but_not_gaps():
    maps = [(0x1000, 0x3000, "rw-p", ""), (0x3000, 0x5000, "rw-p", ""), (0x8000, 0x9000, "rw-p", "")]
    assert _covered(maps, 0x2000, 0x4000)
    assert _covered(maps, 0x8000, 0x9000)
    assert not _covered(maps, 0x4000, 0x8001)
    assert not _covered(maps, 0x0, 0x1001)
    assert not _covered(maps, 0x8fff, 0x9001)


def test_knob_hints_plan_the_previous_value(tree):
    plan = check(ctx_for(tree), {"kind": "set_knob", "knob": "thp_enabled", "value": "never"})
    assert plan == {"previous": "madvise", "value": "never"}
