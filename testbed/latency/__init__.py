"""Felt memory latency: a TCG plugin that makes each node as slow as its topology says.

build      compile plugin.c on first use, cached by digest; check QEMU loads it
layout     guest physical ranges of each node (q35 layout, CXL windows), checked against the guest
control    host side of the plugin's control socket: counters, delays, ranges
emulated   a guest booted in emulated mode (TCG, one thread or one per vCPU, plugin loaded)
calibrate  scale injected delays to TCG's own speed so node ratios hold; cached per host and image
probe      `testbed probe-latency`: measured vs target latency per node
"""
