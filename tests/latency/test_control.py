"""The plugin's control socket, spoken to in a real QEMU (no guest: `-machine none`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess

import pytest

from testbed.latency import build
from testbed.latency.control import COUNTER_FIELDS, Control, ControlError, Counters
from testbed.process import child_dies_with_parent, start_child

needs_qemu = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("qemu-system-x86_64") is None,
                                reason="needs gcc and qemu-system-x86_64")

SAMPLE = json.dumps({
    "nodes": [{"node": 0, **dict.fromkeys(COUNTER_FIELDS, 1)}, {"node": -1, **dict.fromkeys(COUNTER_FIELDS, 0)}],
    "vcpus": [{"vcpu": 1, **dict.fromkeys(COUNTER_FIELDS, 1)}], "ran_ns": [{"vcpu": 1, "ns": 7}],
    "slept_ns": 5, "sleeps": 2})


def test_counters_parse_per_node_and_per_vcpu():
    c = Counters.parse(SAMPLE)
    assert set(c.nodes) == {0, -1} and c.nodes[0]["misses"] == 1
    assert set(c.vcpus) == {1} and c.slept_ns == 5 and c.sleeps == 2
    assert c.to_json()["nodes"]["0"]["delay_ns"] == 1
    assert c.ran_ns == {1: 7} and c.to_json()["ran_ns"] == {"1": 7}


def test_counters_since_an_earlier_snapshot_are_the_difference():
    later = json.loads(SAMPLE)
    later["nodes"][0] |= {"misses": 11, "delay_ns": 31}
    later["vcpus"].append({"vcpu": 2, **dict.fromkeys(COUNTER_FIELDS, 4)})  # ran only after the earlier one
    later |= {"slept_ns": 25, "sleeps": 3, "ran_ns": [{"vcpu": 1, "ns": 10}],
              "pace": [{"vcpu": 1, "permille": 400, "insns": 9, "slept_ns": 8}]}
    earlier = json.loads(SAMPLE) | {"pace": [{"vcpu": 1, "permille": 400, "insns": 2, "slept_ns": 1}]}
    window = Counters.parse(json.dumps(later)).since(Counters.parse(json.dumps(earlier)))
    assert window.nodes[0]["misses"] == 10 and window.nodes[0]["delay_ns"] == 30 and window.nodes[0]["reads"] == 0
    assert window.vcpus[2]["accesses"] == 4 and window.vcpus[1]["accesses"] == 0
    assert (window.slept_ns, window.sleeps, window.ran_ns) == (20, 1, {1: 3})
    assert window.pace[1] == {"permille": 400, "insns": 7, "slept_ns": 7}


def test_counters_missing_a_field_do_not_parse():
    broken = json.loads(SAMPLE)
    del broken["nodes"][0]["misses"]
    with pytest.raises(KeyError):
        Counters.parse(json.dumps(broken))


@contextlib.contextmanager
def machineless_qemu(sock, plugin_args: list[str], threads: str = "single"):
    """A machine-less QEMU with the plugin loaded and listening on `sock`; killed on exit."""
    args = ",".join([str(build.ensure()), f"sock={sock}", *plugin_args])
    process = start_child(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                           "-accel", f"tcg,thread={threads}", "-plugin", args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with Control(sock) as control:
            yield control
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def plugin_qemu(tmp_path):
    with machineless_qemu(tmp_path / "ctl.sock", ["cache_kib=1024", "line=128", "ways=8", "credit_cap_ns=1000000",
                          "range=0:40000000:0", "range=40000000:80000000:1", "delay=1:250:900"]) as control:
        yield control


@needs_qemu
def test_config_shows_the_arguments_qemu_passed(plugin_qemu):
    config = plugin_qemu.config()
    assert config["ranges"] == [[0, 0x40000000, 0], [0x40000000, 0x80000000, 1]]
    assert config["delays"][:2] == [[0, 0], [250, 900]]
    assert (config["cache_kib"], config["line"], config["ways"]) == (1024, 128, 8)
    assert config["sets"] == 1024 * 1024 // 128 // 8
    assert config["credit_cap_ns"] == 1_000_000


@needs_qemu
def test_delays_and_ranges_change_while_running(plugin_qemu):
    plugin_qemu.set_delay(0, 500, 600)
    plugin_qemu.add_range(0x100000000, 0x140000000, 2)
    config = plugin_qemu.config()
    assert config["delays"][0] == [500, 600]
    assert config["ranges"][-1] == [0x100000000, 0x140000000, 2]


@needs_qemu
def test_counters_cover_every_ranged_node_and_the_unclassified_slot(plugin_qemu):
    plugin_qemu.reset()
    counters = plugin_qemu.read()
    assert set(counters.nodes) == {0, 1, -1}
    assert all(v == 0 for node in counters.nodes.values() for v in node.values())
    assert (counters.slept_ns, counters.sleeps, counters.credited_ns) == (0, 0, 0)
    assert counters.ran_ns == {}  # a machine without CPUs: no vCPU ever held the thread


@needs_qemu
def test_no_phase_is_counted_until_the_guest_marks_one(plugin_qemu):
    plugin_qemu.reset()
    assert plugin_qemu.request("marks") == '{"begin":null,"end":null}'
    assert plugin_qemu.phase() is None
    assert plugin_qemu.timed()[1] == "gate-to-exit"  # so a timed phase takes everything since the reset


@needs_qemu
def test_the_emulators_miss_cost_is_set_while_running(plugin_qemu):
    assert plugin_qemu.config()["miss_cost"] == [0, 0]  # nothing kept out of a pace until told
    plugin_qemu.set_miss_cost(612.4, 598.6)
    assert plugin_qemu.config()["miss_cost"] == [612, 599]


@needs_qemu
@pytest.mark.parametrize("request_line", ["delay 99 1 1", "range 10 5 0", "miss_cost 5", "miss_cost 1 9999999",
                                          "frobnicate"])
def test_bad_requests_are_refused_and_the_socket_stays_usable(plugin_qemu, request_line):
    with pytest.raises(ControlError, match="plugin refused"):
        plugin_qemu.request(request_line)
    assert plugin_qemu.config()["cache_kib"] == 1024


def refused(plugin_args: str, threads: str = "single") -> str:
    """QEMU's stderr on loading the plugin with `plugin_args`; it must have stopped."""
    result = subprocess.run(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                             "-accel", f"tcg,thread={threads}", "-plugin", f"{build.ensure()},{plugin_args}"],
                            check=False, capture_output=True, text=True, timeout=30, preexec_fn=child_dies_with_parent)
    assert result.returncode != 0
    return result.stderr


@needs_qemu
def test_a_bad_plugin_argument_stops_qemu_with_its_name(tmp_path):
    assert "bad argument 'ways=0'" in refused("ways=0")


def test_no_plugin_listening_is_a_clear_error(tmp_path):
    with pytest.raises(ControlError, match="no latency plugin listening"):
        Control(tmp_path / "absent.sock").connect(wait=0.2)


@needs_qemu
def test_pacing_arguments_load_and_speeds_change_while_running(tmp_path):
    with machineless_qemu(tmp_path / "ctl.sock", ["mem=0", "speed=1:400", "pace_batch_ns=500000"], "multi") as control:
        control.request("speed 1 700")
        for bad in ("speed 1 0", "speed 1 1001"):
            with pytest.raises(ControlError, match="plugin refused"):
                control.request(bad)
        assert control.read().slept_ns == 0 and control.read().pace == {}  # no vCPU ran


@needs_qemu
def test_under_mttcg_the_plugin_looks_nothing_up_until_armed(tmp_path):
    with machineless_qemu(tmp_path / "ctl.sock", ["threads=multi", "range=0:40000000:0"], "multi") as control:
        assert (control.config()["threads"], control.config()["armed"]) == ("multi", False)
        control.arm()
        control.flush()  # under MTTCG the control thread empties the cache model itself, under every set lock
        assert control.config()["armed"] is True
    with machineless_qemu(tmp_path / "ctl2.sock", []) as control:
        assert (control.config()["threads"], control.config()["armed"]) == ("single", True)


@needs_qemu
def test_speeds_cannot_be_set_while_running_without_pacing_at_start(plugin_qemu):
    with pytest.raises(ControlError, match="plugin refused"):
        plugin_qemu.request("speed 0 500")


@needs_qemu
def test_each_initiator_keeps_its_own_delays_under_mttcg(tmp_path):
    args = ["threads=multi", "initiator=2:1", "initiator=3:1", "delay=1:100:110", "delay=1:300:310@0",
            "delay=0:320:330@1"]
    with machineless_qemu(tmp_path / "ctl.sock", args, "multi") as control:
        config = control.config()
        assert config["initiators"] == [0, 0, 1, 1]
        assert [row[:2] for row in config["initiator_delays"]] == [[[0, 0], [300, 310]], [[320, 330], [100, 110]]]
        assert config["delays"][:2] == [[0, 0], [300, 310]]  # initiator 0's, as before
        control.set_delay(1, 700, 710, initiator=1)
        control.set_delay(0, 50, 60)  # every initiator's
        assert [row[:2] for row in control.config()["initiator_delays"]] == [[[50, 60], [300, 310]],
                                                                            [[50, 60], [700, 710]]]


@needs_qemu
def test_one_tcg_thread_keeps_one_table_and_refuses_one_initiators_delay(plugin_qemu):
    config = plugin_qemu.config()
    assert (config["initiators"], len(config["initiator_delays"])) == ([], 1)
    with pytest.raises(ControlError, match="plugin refused"):
        plugin_qemu.set_delay(1, 700, 710, initiator=1)
    assert plugin_qemu.config()["delays"][1] == [250, 900]


@needs_qemu
@pytest.mark.parametrize("arg", ["initiator=2:1", "delay=1:300:310@1"])
def test_per_initiator_arguments_under_one_tcg_thread_stop_qemu(arg):
    assert "need threads=multi" in refused(arg)


@needs_qemu
@pytest.mark.parametrize("arg", ["delay=1:300:310@", "delay=1:300:310@x", "delay=1:300:310x", "delay=1:300:310@99",
                                 "initiator=2", "initiator=2:1x", "initiator=99:1", "initiator=2:99"])
def test_malformed_initiator_arguments_are_refused_by_name(arg):
    assert f"bad argument '{arg}'" in refused(f"threads=multi,{arg}", "multi")
