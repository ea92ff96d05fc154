"""Parsing a node's meminfo, and the hold program's argument checks, on the host."""

from __future__ import annotations

import os
import resource
import subprocess

import pytest

from testbed import guest_binary
from testbed.evaluation import squeeze

MEMINFO = """Node 1 MemTotal:        1048576 kB
Node 1 MemFree:          1012344 kB
Node 1 MemUsed:            36232 kB
"""


def test_free_mib_of_the_named_node():
    assert squeeze.free_mib(MEMINFO, 1) == 1012344 // 1024
    with pytest.raises(squeeze.SqueezeError, match="no 'Node 0 MemFree' line"):
        squeeze.free_mib(MEMINFO, 0)


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] < 4 << 20 and os.geteuid() != 0,
                    reason="RLIMIT_MEMLOCK below 4 MiB: the host cannot lock what the test holds")
def test_hold_program_holds_and_reports(host_cache):
    program = guest_binary.build(squeeze.HOLD_SOURCE)
    proc = subprocess.Popen([str(program), "4"], stdout=subprocess.PIPE, text=True)
    try:
        match = squeeze.HOLDING_RE.search(proc.stdout.readline())
        assert match and int(match.group(1)) == proc.pid and match.group(2) == "4"
        assert proc.poll() is None  # holds until killed
    finally:
        proc.kill()
        proc.wait()
    bad = subprocess.run([str(program), "lots"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "usage: hold_memory SIZE_MIB" in bad.stderr
