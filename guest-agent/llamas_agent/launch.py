"""`run`: start a program under a memory policy, the one way to set another program's policy.

set_mempolicy acts on the caller and survives exec, so the agent sets the
policy on itself and then becomes the program.  The policy comes from the
command line or from a `set_policy` hint that targeted a launch name.
"""

import os

from .syscalls import set_mempolicy

# The launch name travels in the environment: inherited by the program's children, and readable
# by the agent in /proc/PID/environ, so `enforce` rules can name it without a record of pids.
LAUNCH_ENV = "LLAMAS_LAUNCH"


def resolve_policy(records, name, mode, nodes):
    """(mode, nodes) to use: explicit arguments first, else the stored launch policy, else None."""
    if mode:
        return mode, nodes
    if name:
        stored = records.load(records.launch_path, {}).get(name)
        if stored:
            return stored["mode"], stored["nodes"]
    return None, []


def run(mode, nodes, argv, name=None):
    """Set our policy (if any) and the launch name (if any), and exec argv; returns only on failure."""
    if name:
        os.environ[LAUNCH_ENV] = name
    if mode:
        set_mempolicy(mode, nodes)
    os.execvp(argv[0], argv)
