"""Counters from /proc/vmstat that show placement at work."""

# Prefixes and names of counters that move when pages are placed, promoted,
# demoted or migrated, or when NUMA balancing samples accesses.
PREFIXES = ("pgpromote_", "pgdemote_", "pgmigrate_", "numa_", "thp_migration_", "compact_")
NAMES = ("pgalloc_normal", "pgalloc_movable")


def gather_vmstat(tree):
    """{counter: value} for the placement counters this kernel has."""
    out = {}
    for line in (tree.read("proc/vmstat", default="") or "").splitlines():
        name, _, value = line.partition(" ")
        if (name.startswith(PREFIXES) or name in NAMES) and value.strip().isdigit():
            out[name] = int(value)
    return out
