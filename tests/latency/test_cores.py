"""Core speeds: the plugin arguments a hybrid machine gets, the speed and felt-latency checks of `testbed validate`."""

from __future__ import annotations

from pathlib import Path

from testbed.latency.emulated import (
    CacheModel,
    nominal_paces,
    plugin_option,
    probe_cpus,
    speed_args,
)
from testbed.validate import latency_checks, speed_checks


def test_a_uniform_machine_gets_no_pacing(load_topology):
    assert speed_args(load_topology("dram-cxl")) == []


def test_slow_vcpus_boot_armed_at_full_speed_without_memory_callbacks(load_topology):
    topo = load_topology("hybrid-cores")
    assert speed_args(topo) == ["speed=2:1000", "speed=3:1000"]
    option = plugin_option(Path("/p.so"), Path("/s"), topo, {}, CacheModel(), mttcg=True, memory=False)
    assert option.startswith("/p.so,sock=/s,") and option.endswith(",speed=2:1000,speed=3:1000")
    assert ",threads=multi," in option and ",mem=0," in option


def test_memory_latency_under_mttcg_asks_the_plugin_to_lock_and_wait_for_arm(load_topology):
    topo = load_topology("dram-nvm")
    single = plugin_option(Path("/p.so"), Path("/s"), topo, {1: (900, 6000)}, CacheModel()).split(",")
    multi = plugin_option(Path("/p.so"), Path("/s"), topo, {1: (900, 6000)}, CacheModel(), mttcg=True).split(",")
    assert "threads=multi" not in single and "mem=0" not in single
    assert sorted(multi) == sorted([*single, "threads=multi"])


def test_nominal_paces_are_the_file_speeds_in_thousandths(load_topology):
    assert nominal_paces(load_topology("hybrid-cores")) == {2: 400, 3: 400}
    assert nominal_paces(load_topology("dram-cxl")) == {}


def test_speed_checks_hold_within_ten_percent(load_topology):
    topo = load_topology("hybrid-cores")
    checks = speed_checks(topo, {0: 1.0, 1: 0.97, 2: 0.37, 3: 0.45})
    assert [(c.name, c.expected, c.observed, c.ok) for c in checks] == [
        ("cpu0.speed", 1.0, 1.0, True), ("cpu1.speed", 1.0, 0.97, True),
        ("cpu2.speed", 0.4, 0.37, True), ("cpu3.speed", 0.4, 0.45, False)]


def test_a_vcpu_not_measured_fails_its_check(load_topology):
    checks = speed_checks(load_topology("hybrid-cores"), {0: 1.0, 1: 1.0, 2: 0.4})
    assert [c.ok for c in checks] == [True, True, True, False]


def test_latency_probes_run_on_the_fastest_vcpus_of_the_cpu_node(load_topology):
    assert probe_cpus(load_topology("hybrid-tiered")) == [0, 1]  # never a paced efficiency core
    assert probe_cpus(load_topology("dram-nvm")) == [0, 1]
    assert probe_cpus(load_topology("two-socket")) == [0, 1]  # socket 0's CPUs, as before


def test_latency_checks_hold_within_ten_percent_per_node_and_kind():
    checks = latency_checks({1: {"read": (3.05, 3.2), "write": (9.0, 7.9)}})
    assert [(c.name, c.expected, c.observed, c.ok) for c in checks] == [
        ("node1.felt_read_ratio", 3.05, 3.2, True), ("node1.felt_write_ratio", 9.0, 7.9, False)]
