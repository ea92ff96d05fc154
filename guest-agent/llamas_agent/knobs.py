"""Kernel tiering knobs: read them, check a value is one the kernel accepts, write them.

Each knob is a file; values are kept in the form the kernel prints, normalised
so that what `gather` reports can be written back by `undo` unchanged.
"""

from .sysfs import numbered

NUMA_BALANCING = "proc/sys/kernel/numa_balancing"
DEMOTION = "sys/kernel/mm/numa/demotion_enabled"
THP_ENABLED = "sys/kernel/mm/transparent_hugepage/enabled"
WI_DIR = "sys/kernel/mm/mempolicy/weighted_interleave"

# 0 off, 1 NUMA_BALANCING_NORMAL, 2 NUMA_BALANCING_MEMORY_TIERING, 3 both (kernel/sched/core.c).
NUMA_BALANCING_MODES = (0, 1, 2, 3)
THP_MODES = ("always", "madvise", "never")
WEIGHT_MIN, WEIGHT_MAX = 1, 255  # the sysfs store rejects 0 and anything above a u8
KNOB_NAMES = ("numa_balancing", "demotion_enabled", "thp_enabled", "weighted_interleave")


def _thp_mode(text):
    """'always [madvise] never' -> 'madvise'."""
    for word in (text or "").split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _demotion(text):
    if text in ("true", "1", "y", "Y"):
        return True
    if text in ("false", "0", "n", "N"):
        return False
    return None


def weights(tree):
    """{node: weight} from the weighted-interleave sysfs directory, {} where absent."""
    return {n: tree.read_int(WI_DIR, name) for n, name in numbered(tree.listdir(WI_DIR), "node")}


def gather_knobs(tree):
    """Every knob's current value, None where the kernel lacks it."""
    return {
        "numa_balancing": tree.read_int(NUMA_BALANCING),
        "demotion_enabled": _demotion(tree.read(DEMOTION)),
        "thp_enabled": _thp_mode(tree.read(THP_ENABLED)),
        "weighted_interleave": {str(n): w for n, w in weights(tree).items()},
    }


def check_value(tree, knob, value, node_ids):
    """None when the kernel accepts `value` for `knob` here, else why not."""
    current = gather_knobs(tree).get(knob)
    if knob not in KNOB_NAMES:
        return f"unknown knob {knob!r}"
    if current is None or (knob == "weighted_interleave" and not current):
        return f"knob {knob} is not offered by this kernel"
    if knob == "numa_balancing":
        ok = type(value) is int and value in NUMA_BALANCING_MODES
        return None if ok else f"numa_balancing must be one of {list(NUMA_BALANCING_MODES)}, not {value!r}"
    if knob == "demotion_enabled":
        return None if type(value) is bool else f"demotion_enabled must be true or false, not {value!r}"
    if knob == "thp_enabled":
        return None if value in THP_MODES else f"thp_enabled must be one of {list(THP_MODES)}, not {value!r}"
    return _check_weights(value, current, node_ids)


def _check_weights(value, current, node_ids):
    if not isinstance(value, dict) or not value:
        return "weighted_interleave must be a non-empty object {node: weight}"
    for key, weight in value.items():
        if not key.isdigit() or int(key) not in node_ids or key not in current:
            return f"weighted_interleave names node {key!r}, which has no weight file here"
        if type(weight) is not int or not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            return f"weighted_interleave weight for node {key} must be {WEIGHT_MIN}..{WEIGHT_MAX}, not {weight!r}"
    return None


def write_knob(tree, knob, value):
    """Write a (checked) value; for weights, only the nodes named."""
    if knob == "numa_balancing":
        _write(tree.path(NUMA_BALANCING), str(value))
    elif knob == "demotion_enabled":
        _write(tree.path(DEMOTION), "true" if value else "false")
    elif knob == "thp_enabled":
        _write(tree.path(THP_ENABLED), value)
    elif knob == "weighted_interleave":
        for node, weight in sorted(value.items()):
            _write(tree.path(WI_DIR, f"node{node}"), str(weight))
    else:
        raise ValueError(f"unknown knob {knob!r}")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
