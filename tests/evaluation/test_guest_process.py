"""Guest process handles: tags name guest files, so only safe characters pass."""

from __future__ import annotations

import pytest

from testbed.evaluation.guest_process import GuestProcess


@pytest.mark.parametrize("tag", ["a b", "x;rm -rf /", "", "../up", "a" * 65])
def test_unsafe_tags_are_refused(tag):
    with pytest.raises(ValueError, match="letters, digits"):
        GuestProcess(None, tag)


def test_paths_follow_the_tag():
    proc = GuestProcess(None, "skewed-read.0")
    assert (proc.out, proc.rc, proc.gate) == ("/tmp/llamas-skewed-read.0.out", "/tmp/llamas-skewed-read.0.rc",
                                              "/tmp/llamas-skewed-read.0.go")
