"""The SSH transport's shutdown path, on real paramiko objects (no guest needed)."""

from __future__ import annotations

import socket

import paramiko
from fabric import Connection

from testbed.ssh import GuestShell


def test_close_survives_a_transport_left_half_updated_by_a_signal(tmp_path):
    # What a stop signal raised inside Transport.open_channel leaves behind (seen in CI): the new
    # channel is registered but has no transport yet, so paramiko's own close raises AttributeError.
    ours, theirs = socket.socketpair()
    transport = paramiko.Transport(ours)
    transport.active = True
    orphan = paramiko.Channel(0)  # the channel map holds it weakly; the interrupted frame held it in CI
    transport._channels.put(0, orphan)
    conn = Connection("127.0.0.1")
    conn.client._transport = conn.transport = transport
    shell = GuestShell(port=2222, client_key=tmp_path / "key", host_key="")
    shell._conn = conn

    shell.close()  # must not raise: shutdown goes on to quit QEMU

    assert ours.fileno() == -1  # the socket was closed all the same
    assert theirs.recv(1) == b""  # and the other end sees it
    shell.close()  # idempotent
    theirs.close()
