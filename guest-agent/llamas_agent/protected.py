"""Processes that no hint may slow down: the guest's control path, and those the administrator names.

SSH is the harness's only way into the guest.  A hint that put sshd, or the
shell the agent runs in, into the idle class on a loaded guest would lock the
testbed out of its own machine, so those processes are protected: init, every
ancestor of the agent, every process of the SSH daemon (the listener and each
session's own sshd, whose children are the harness's commands and inherit its
nice level), and the names listed in /etc/llamas-agent/protected.

Slowing down is what is refused: the idle or batch class, a nice level above
the current one, an affinity that takes away a CPU the process may use now.
Moving a protected process's pages costs it nothing lasting and stays allowed.
What a session's commands start is not protected (unless it is an ancestor of
the agent): those are the workloads that hints are for.
"""

import os

from .processes import NAME_MAX_CHARS, parse_stat, parse_status, sanitize
from .sysfs import parse_cpulist

ADMIN_FILE = "/etc/llamas-agent/protected"
# OpenSSH >= 9.8 runs each connection as sshd-session (and 10.0 authenticates in sshd-auth).
SSHD_NAMES = ("sshd", "sshd-session", "sshd-auth")
COMM_CHARS = 15  # TASK_COMM_LEN - 1: the kernel keeps this much of a process name
MAX_DEPTH = 4096  # an ancestor walk ends here even if /proc were to loop
SLOW_CLASSES = ("idle", "batch")


def admin_names(tree):
    """Names from the administrator's file: one process name (comm) per line, `#` starts a comment."""
    names = set()
    for line in (tree.read(ADMIN_FILE, default="") or "").splitlines():
        name = line.partition("#")[0].strip()
        if name:
            names.add(name[:COMM_CHARS])
    return names


def ancestors(tree, pids):
    """{ancestor pid: the agent pid it is an ancestor of}, walking each pid's parents up to init."""
    out = {}
    for start in pids:
        pid = _ppid(tree, start)
        for _ in range(MAX_DEPTH):
            if not pid or pid in out:
                break
            out[pid] = start
            pid = _ppid(tree, pid)
    return out


def _ppid(tree, pid):
    text = tree.read("proc", str(pid), "stat")
    return parse_stat(text)["ppid"] if text else None


def why_protected(ctx, pid):
    """(name of pid, fit for a message; why it is protected, a phrase, or None).

    Init is refused for every kind of hint before this is asked.
    """
    stat = ctx.tree.read("proc", str(pid), "stat")
    comm = parse_stat(stat)["comm"] if stat else ""
    return sanitize(comm, NAME_MAX_CHARS), _why(ctx, pid, comm)


def _why(ctx, pid, comm):
    if comm in SSHD_NAMES or _exe_name(ctx.tree, pid) in SSHD_NAMES:
        return "the SSH daemon, the harness's only way into the guest"
    if pid in ctx.ancestors:
        return f"an ancestor of the agent (pid {ctx.ancestors[pid]})"
    if comm in ctx.protected_names:
        return f"listed in {ADMIN_FILE}"
    return None


def _exe_name(tree, pid):
    try:
        return os.path.basename(os.readlink(tree.path("proc", str(pid), "exe")))
    except OSError:
        return None


def sched_slowdown(tree, pid, nice=None, policy=None):
    """What in a set_sched would slow pid down, or None: a slow class, or a nice above any thread's now."""
    if policy in SLOW_CLASSES:
        return f"the {policy} class"
    nices = [parse_stat(text)["nice"] for text in _thread_files(tree, pid, "stat")]
    if nice is not None and nices and nice > min(nices):
        return f"nice {nice} (above its current {min(nices)})"
    return None


def affinity_slowdown(tree, pid, cpus, online):
    """What in a set_affinity would slow pid down, or None: an online CPU it may use now left out."""
    allowed = set()
    for text in _thread_files(tree, pid, "status"):
        allowed.update(parse_cpulist(parse_status(text).get("Cpus_allowed_list", "")))
    lost = sorted(allowed & online - set(cpus))
    return f"CPUs {sorted(cpus)} (leaving out CPU(s) {lost} it may use now)" if lost else None


def _thread_files(tree, pid, name):
    """The `name` file of each thread of pid, or the process's own where its threads cannot be listed."""
    texts = [tree.read("proc", str(pid), "task", tid, name) for tid in tree.listdir("proc", str(pid), "task")]
    texts = [t for t in texts if t]
    if not texts:
        own = tree.read("proc", str(pid), name)
        texts = [own] if own else []
    return texts
