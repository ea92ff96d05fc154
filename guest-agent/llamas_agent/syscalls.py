"""ctypes wrappers for the kernel's NUMA placement system calls.

glibc exports none of migrate_pages, move_pages, set_mempolicy, get_mempolicy
or mbind (libnuma does, and the guest has no libnuma for Python), so they go
through syscall(2) by number.  Errors raise OSError with the kernel's errno.

What the kernel allows, and so what the agent can do for *another* process:
- migrate_pages(pid, old, new): move all of a process's pages between node sets.
- move_pages(pid, addrs, nodes): move (or, with nodes=None, locate) single pages
  of a process: this is how one address range of another process moves.
- set_mempolicy / mbind act on the *caller* only.  No system call sets another
  task's policy for future memory; the agent offers `llamas-agent run --policy`
  (set_mempolicy, then exec: the policy is inherited) and cpuset cgroups.
"""

import ctypes
import os
import platform

# Numbers per architecture (asm/unistd_64.h); the guest is x86_64, arm64 for completeness.
_NUMBERS = {
    "x86_64": {"mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239,
               "migrate_pages": 256, "move_pages": 279},
    "aarch64": {"mbind": 235, "get_mempolicy": 236, "set_mempolicy": 237,
                "migrate_pages": 238, "move_pages": 239},
}

MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE = 0, 1, 2, 3
MPOL_LOCAL, MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE = 4, 5, 6
MODES = {"default": MPOL_DEFAULT, "preferred": MPOL_PREFERRED, "bind": MPOL_BIND,
         "interleave": MPOL_INTERLEAVE, "local": MPOL_LOCAL,
         "preferred_many": MPOL_PREFERRED_MANY, "weighted_interleave": MPOL_WEIGHTED_INTERLEAVE}
MPOL_MF_MOVE = 1 << 1

# Room for 1024 nodes; the kernel ignores (and checks are zero) bits past MAX_NUMNODES.
_MASK_LONGS = 1024 // (8 * ctypes.sizeof(ctypes.c_ulong))
_MAXNODE = _MASK_LONGS * 8 * ctypes.sizeof(ctypes.c_ulong)

_libc = None


def _syscall(name, *args):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    number = _NUMBERS.get(platform.machine(), {}).get(name)
    if number is None:
        raise OSError(38, f"{name}: unsupported architecture {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(number), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret


def nodemask(nodes):
    """A kernel nodemask (array of unsigned long) with `nodes` set."""
    mask = (ctypes.c_ulong * _MASK_LONGS)()
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    for n in nodes:
        if not 0 <= n < _MAXNODE:
            raise ValueError(f"node {n} out of range")
        mask[n // bits] |= 1 << (n % bits)
    return mask


def migrate_pages(pid, from_nodes, to_nodes):
    """Move pid's pages on `from_nodes` to `to_nodes`; returns pages that could not move."""
    # maxnode is one more than the bits passed: the kernel's get_nodes() drops one.
    return _syscall("migrate_pages", ctypes.c_int(pid), ctypes.c_ulong(_MAXNODE + 1),
                    nodemask(from_nodes), nodemask(to_nodes))


def move_pages(pid, addresses, node=None):
    """Move the pages at `addresses` of pid to `node`, or only locate them if node is None.

    Returns one status per page: the node the page is on now, or -errno
    (-ENOENT: not present, -EFAULT: not mapped, -EBUSY, -ENOMEM, ...).
    """
    count = len(addresses)
    pages = (ctypes.c_void_p * count)(*addresses)
    status = (ctypes.c_int * count)(*([-1] * count))
    nodes = (ctypes.c_int * count)(*([node] * count)) if node is not None else None
    _syscall("move_pages", ctypes.c_int(pid), ctypes.c_ulong(count), pages, nodes, status,
             ctypes.c_int(MPOL_MF_MOVE if node is not None else 0))
    return list(status)


def set_mempolicy(mode, nodes=()):
    """Set the caller's policy for new memory (inherited across fork and exec)."""
    mask = nodemask(nodes) if nodes else None
    return _syscall("set_mempolicy", ctypes.c_int(MODES[mode]), mask,
                    ctypes.c_ulong(_MAXNODE + 1 if nodes else 0))


def get_mempolicy():
    """The caller's own policy: (mode name, [nodes])."""
    mode = ctypes.c_int(0)
    mask = nodemask(())
    _syscall("get_mempolicy", ctypes.byref(mode), mask, ctypes.c_ulong(_MAXNODE + 1),
             None, ctypes.c_ulong(0))
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    nodes = [i for i in range(_MAXNODE) if mask[i // bits] >> (i % bits) & 1]
    # Mode flags (MPOL_F_STATIC_NODES, ...) sit in the high bits.
    name = next((k for k, v in MODES.items() if v == mode.value & 0xFF), str(mode.value))
    return name, nodes


def mbind(address, length, mode, nodes, move=False):
    """Set the policy of the caller's own range [address, address+length)."""
    return _syscall("mbind", ctypes.c_void_p(address), ctypes.c_ulong(length), ctypes.c_int(MODES[mode]),
                    nodemask(nodes), ctypes.c_ulong(_MAXNODE + 1), ctypes.c_uint(MPOL_MF_MOVE if move else 0))
