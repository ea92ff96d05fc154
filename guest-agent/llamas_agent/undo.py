"""`undo`: reverse the recorded changes, newest first, and clear the record.

Knobs, CPU affinities, nice levels and scheduling classes, and launch policies are restored.  Page moves of
`apply` are not recorded: the pages already sit where the hint asked, and moving them back is
a new hint with its own checks.  An `enforce` daemon is stopped and the pages it moved go back
(its journal, enforce.py): a standing policy keeps moving pages, so only undo ends it.  A thread that has exited since is skipped and
reported.
"""

import os

from .apply import SCHED_POLICY, set_sched
from .knobs import write_knob


def undo(tree, records):
    """Restore everything in the undo record; return what was done, entry by entry."""
    entries = records.load(records.undo_path, [])
    done = []
    for entry in reversed(entries):
        try:
            detail = _UNDO[entry["type"]](tree, records, entry)
            outcome = {"entry": entry, "status": "restored", "detail": detail}
        except (OSError, KeyError) as exc:
            outcome = {"entry": entry, "status": "failed", "detail": str(exc)}
        done.append(outcome)
        records.audit(action="undo", **outcome)
    records.save(records.undo_path, [])
    return {"undone": done}


def _knob(tree, records, entry):
    write_knob(tree, entry["knob"], entry["previous"])


def _affinity(tree, records, entry):
    gone = []
    for tid, cpus in entry["previous"].items():
        try:
            os.sched_setaffinity(int(tid), set(cpus))
        except ProcessLookupError:
            gone.append(int(tid))
    return {"exited_threads": gone}


def _sched(tree, records, entry):
    gone = []
    for tid, (nice, policy) in entry["previous"].items():
        try:
            set_sched(int(tid), nice, policy if policy in SCHED_POLICY else None)
        except ProcessLookupError:
            gone.append(int(tid))
    return {"exited_threads": gone}


def _launch(tree, records, entry):
    launches = records.load(records.launch_path, {})
    if entry["previous"] is None:
        launches.pop(entry["name"], None)
    else:
        launches[entry["name"]] = entry["previous"]
    records.save(records.launch_path, launches)


def _enforce(tree, records, entry):
    from .enforce import restore
    return restore(tree, records, entry)


_UNDO = {"enforce": _enforce, "knob": _knob, "affinity": _affinity, "sched": _sched, "launch": _launch}
