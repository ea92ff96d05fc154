"""The KVM probe's reason must be QEMU's complaint, not a register dump."""

from testbed.accel import _failure_reason


def test_failure_reason_picks_qemus_complaint_over_the_register_dump():
    output = "KVM internal error. Suberror: 1\nemulation failure\nRAX=0000000000000001 RBX=0\nCode=05 83 fa 0f <c4> 42\n"
    assert _failure_reason(output) == "KVM internal error. Suberror: 1"


def test_failure_reason_falls_back_to_the_last_line_or_says_there_was_none():
    assert _failure_reason("SeaBIOS\nbooting\n") == "booting"
    assert _failure_reason("  \n") == "no output"
