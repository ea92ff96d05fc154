"""Atomic writes and host-wide locks, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from testbed.files import locked, write_atomic

HOLD = "import sys, time\nfrom testbed.files import locked\nwith locked(sys.argv[1]):\n    print('held', flush=True)\n" \
       "    time.sleep(float(sys.argv[2]))\n"


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a" / "f.json", "old")
    write_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_a_lock_held_by_another_process_makes_the_next_holder_wait(tmp_path):
    lock = tmp_path / "prepare.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with locked(lock):
        waited = time.monotonic() - started
    assert waited > 1.0  # the holder let go after 1.5 s
    holder.wait()


def test_a_killed_holder_never_leaves_the_lock_held(tmp_path):
    lock = tmp_path / "prepare.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with locked(lock):
        pass
