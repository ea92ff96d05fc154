"""Felt memory latency: a TCG plugin that makes each node as slow as its topology says.

build      compile plugin.c on first use, cached by digest; check QEMU loads it
layout     guest physical ranges of each node (q35 layout, CXL windows), checked against the guest
control    host side of the plugin's control socket: counters, delays, ranges
emulated   a guest booted in emulated mode (TCG, one thread or one per vCPU, plugin loaded)
calibrate  scale injected delays to TCG's own speed so node ratios hold; cached per host and image
trim       per-node delays fitted until each node feels k times its target; checked every boot
cores      the pace of slow cores, fitted so each core runs at its topology's speed
felt       what a booted machine feels (pace, delays, k): one fit for the evaluation and MCP
probe      `testbed probe-latency`: measured vs target latency per node
"""
