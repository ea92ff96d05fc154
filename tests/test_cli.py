"""The CLI's behaviour that needs no guest: bad files stop before QEMU, listings work."""

from __future__ import annotations

import subprocess
import sys

TESTBED = [sys.executable, "-m", "testbed.cli"]


def test_broken_topology_fails_before_qemu_starts(write_topology):
    bad = write_topology(
        """
description = "A machine whose distance matrix is not symmetric, which no firmware would report."
distances = [[10, 21], [31, 10]]
[[nodes]]
id = 0
kind = "dram"
size = "512M"
cpus = [0]
[[nodes]]
id = 1
kind = "cxl"
size = "512M"
""",
        name="lopsided",
    )
    out = subprocess.run([*TESTBED, "validate", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2
    assert str(bad) in out.stderr
    assert "distances[0][1]=21 but distances[1][0]=31" in out.stderr.replace("\n", "")
    assert "booting" not in out.stderr  # nothing was started


def test_every_file_is_checked_before_the_first_boot(write_topology):
    bad = write_topology(
        'description = "A machine with a typo in one node, caught before any other topology boots."\n'
        '[[nodes]]\nid = 0\nkind = "dram"\nsize = "1G"\ncpus = [0]\ncolour = "red"\n',
        name="typo",
    )
    out = subprocess.run([*TESTBED, "validate", "dram-only", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2
    assert "nodes[0].colour" in out.stderr and "booting" not in out.stderr


def test_unknown_topology_name_is_a_clear_error():
    out = subprocess.run([*TESTBED, "exec", "no-such-machine", "--", "true"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "no-such-machine.toml: no such topology file" in out.stderr


def test_list_shows_every_shipped_topology():
    out = subprocess.run([*TESTBED, "list"], capture_output=True, text=True, timeout=60, check=True)
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"dram-only", "two-socket", "dram-cxl", "dram-nvm", "cxl-type3", "hbm-dram-cxl"} <= set(names)
