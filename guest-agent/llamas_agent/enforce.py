"""`enforce`: keep a placement policy true, interval after interval; `undo` stops it and moves its pages back.

Each round: measure the memory of the processes in scope (classify.py), plan
moves (plan.py), record each moved page's original node in a journal before
moving it, move with move_pages (apply.move_located), arm the next interval,
and append one round record to the audit log.  The daemon's own CPU time is
in every record.

Scope: user processes with at least MIN_SCOPE_RSS_KIB resident (or those named
with --pids), never init, the agent itself, kernel threads or a protected
process (protected.py: sshd, the agent's ancestors, the administrator's list):
clearing soft-dirty bits and moving pages would cost the guest's control path.

Stopping: SIGTERM, SIGINT and SIGHUP are blocked while a round works and
taken while it waits, so a stop never lands between a journal entry and its
move.  `undo` (the "enforce" entry of the undo record) sends SIGTERM, waits,
then moves every journalled page still in a live process back.
"""

import hashlib
import json
import os
import signal
import sys
import time

from .apply import move_located
from .classify import (
    PAGE,
    DamonHeat,
    IdleBitmap,
    arm,
    launch_name,
    measure,
    present_addresses,
)
from .damon import ADMIN as DAMON_ADMIN
from .damon import MAX_TARGETS, SAMPLE_US, DamonUnavailable, monitor
from .machine import gather_nodes, node_memory
from .plan import bytes_by_class, plan_round, room_kib
from .policy import INTERVAL_S, check_machine, parse_policy
from .processes import PF_KTHREAD, parse_maps, parse_stat, parse_status, pids
from .protected import why_protected
from .strict import SchemaError
from .validate import Context, locate

MIN_SCOPE_RSS_KIB = 4096           # smaller processes are not worth a pagemap walk every interval
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_WAIT_S = 60
JOURNAL = "enforce-journal.json"
_UNJUDGED = object()
DAMON_WINDOW_S = 2.0               # DAMON watches the last seconds of each interval: kdamond's CPU is not free
DAMON_AGGR_US = 500_000            # one aggregation: 100 samples of 5 ms
DAMON_MAX_REGIONS = 256             # per process: 2 MiB apiece for 512 MiB in scope; each is read back every round


def load_policy(tree, raw, interval=None):
    """Parse the policy and check it against the machine; SchemaError says what is wrong."""
    policy = parse_policy(raw)
    check_machine(policy, gather_nodes(tree))
    if interval is not None and not INTERVAL_S[0] <= interval <= INTERVAL_S[1]:
        raise SchemaError(f"--interval must be in {INTERVAL_S[0]}..{INTERVAL_S[1]} seconds, got {interval}")
    return policy


def proc_identity(tree, pid):
    """(pid, start time) of a live process, or None: a pid alone may be reused after it exits."""
    text = tree.read("proc", str(pid), "stat")
    if not text:
        return None
    stat = parse_stat(text)
    return None if stat["state"] in ("Z", "X") else (pid, stat["starttime"])


def running(tree, records):
    """The undo entry of an enforce daemon that is still running, or None."""
    for entry in records.load(records.undo_path, []):
        if entry.get("type") == "enforce" and proc_identity(tree, entry["pid"]) == (entry["pid"], entry["starttime"]):
            return entry
    return None


class Journal:
    """Each moved page's node before the daemon first moved it, per process (pid and start time)."""

    def __init__(self, path):
        self.path = path
        self.pages = {}  # "pid:starttime" -> {address: original node}

    def record(self, key, addresses, nodes):
        original = self.pages.setdefault(key, {})
        for a, n in zip(addresses, nodes, strict=True):
            original.setdefault(a, n)  # a page moved twice goes back to where it was first

    def save(self, records):
        """Written atomically as runs [start, pages, node], before the moves it describes."""
        records.save(self.path, {key: _runs(pages) for key, pages in self.pages.items()})


def _runs(pages):
    runs = []
    for a in sorted(pages):
        last = runs[-1] if runs else None
        if last and last[2] == pages[a] and last[0] + last[1] * PAGE == a:
            last[1] += 1
        else:
            runs.append([a, 1, pages[a]])
    return runs


class Daemon:
    """One enforcement session: the policy, its scope, its journal and its counters."""

    def __init__(self, tree, records, policy, raw, interval=None, only_pids=None):
        self.tree, self.records, self.policy = tree, records, policy
        self.digest = hashlib.sha256(raw).hexdigest()
        self.interval = interval or policy["limits"]["interval_s"]
        self.budget = int(policy["limits"]["bandwidth_mib_s"] * self.interval) << 20
        self.keep = policy["limits"].get("keep_free_mib", {})
        self.only = set(only_pids or ())
        self.me = proc_identity(tree, os.getpid()) or (os.getpid(), None)
        self.ctx = Context(tree, (os.getpid(),))
        self.bitmap = IdleBitmap(tree)
        self.heat, self.heat_note = (self.bitmap if self.bitmap.available else None), None
        self.damon = not self.bitmap.available and tree.read_int(DAMON_ADMIN, "nr_kdamonds") is not None
        self.journal = Journal(os.path.join(os.path.dirname(records.undo_path), JOURNAL))
        self.armed, self.skipped, self.verdicts = {}, {}, {}
        self.cpu_total, self.cpu_mark = 0.0, _cpu()

    def scope(self):
        """{pid: starttime} of the processes this round watches; with --pids, why the others are not in it.

        What does not change while a process lives (a kernel thread, protected, init or the agent) is
        judged once per process: most pids of a guest are kernel threads, and each judgement reads
        several /proc files.  Only the size is looked at again every round.
        """
        out, self.skipped, verdicts = {}, {}, {}
        for pid in (sorted(self.only) if self.only else pids(self.tree)):
            ident = proc_identity(self.tree, pid)
            reason = "gone" if ident is None else self.verdicts.get(ident, _UNJUDGED)
            if reason is _UNJUDGED:
                reason = self._unfit(pid)
            if ident is not None:
                verdicts[ident] = reason
            if reason is None and not self.only and _rss_kib(self.tree, pid) < MIN_SCOPE_RSS_KIB:
                reason = "too small"
            if reason is None:
                out[pid] = ident[1]
            elif self.only:
                self.skipped[str(pid)] = reason
        self.verdicts = verdicts  # exited processes are forgotten
        return out

    def _unfit(self, pid):
        """Why pid can never be in scope (for as long as it lives), or None."""
        if pid == 1 or pid == os.getpid():
            return "init or the agent itself"
        stat = self.tree.read("proc", str(pid), "stat")
        if not stat or parse_stat(stat)["flags"] & PF_KTHREAD:
            return "gone, or a kernel thread"
        _, why = why_protected(self.ctx, pid)
        return f"protected ({why})" if why else None

    def arm_all(self):
        """Start the next interval for every process in scope."""
        self.armed = {}
        for pid, start in self.scope().items():
            try:
                arm(self.tree, pid, self._maps(pid), self.bitmap)
                self.armed[pid] = start
            except OSError:
                pass  # exited meanwhile

    def _maps(self, pid):
        return parse_maps(self.tree.read("proc", str(pid), "maps", default="") or "")

    def wait(self, seconds):
        """Let the interval pass, DAMON watching its last seconds where it is the heat source;
        the name of a stop signal that came meanwhile, or None."""
        deadline = time.monotonic() + seconds
        if self.damon:
            got = signal.sigtimedwait(STOP_SIGNALS, max(0.0, seconds - DAMON_WINDOW_S))
            if got is not None:
                return signal.Signals(got.si_signo).name
            self.heat_note = None
            self.heat = self._watch(max(1.0, deadline - time.monotonic()))
        got = signal.sigtimedwait(STOP_SIGNALS, max(0.0, deadline - time.monotonic()))
        return signal.Signals(got.si_signo).name if got is not None else None

    def _watch(self, seconds):
        """DamonHeat for the largest processes in scope (DAMON takes at most MAX_TARGETS), or None."""
        rss = {pid: _rss_kib(self.tree, pid) for pid in self.armed}
        targets = sorted(rss, key=lambda p: -rss[p])[:MAX_TARGETS]
        if not targets:
            return None
        try:
            regions = monitor(self.tree, targets, seconds, DAMON_AGGR_US, DAMON_MAX_REGIONS, DAMON_MAX_REGIONS)
        except (DamonUnavailable, OSError) as exc:
            self.heat_note = f"DAMON: {exc}"  # e.g. in use by a DAMON policy: this round's heat is unmeasured
            return None
        return DamonHeat(regions, DAMON_AGGR_US // SAMPLE_US)

    def round(self, index, since):
        """Measure, plan, journal, move, re-arm; return the round record (also appended to the audit log).

        `since`: when the previous round ended (monotonic), for the daemon's share of one CPU."""
        started = time.monotonic()
        chunks, launches = self._measure()
        room = room_kib(node_memory(self.tree), self.keep)
        plan = plan_round(chunks, launches, self.policy["rules"], room, self.budget, _resolve)
        for move in plan["moves"]:
            self.journal.record(f"{move['pid']}:{self.armed[move['pid']]}", move["addresses"], move["from_nodes"])
        if plan["moves"]:
            self.journal.save(self.records)
        moved = self._move(plan["moves"])
        self.arm_all()
        # The whole interval's CPU: the round's work, and DAMON's set-up and reading in the wait before it.
        now_cpu, ended = _cpu(), time.monotonic()
        cpu, self.cpu_mark = now_cpu - self.cpu_mark, now_cpu
        self.cpu_total += cpu
        record = {"round": index, "policy": self.policy.get("name"), "policy_sha256": self.digest,
                  "processes": sorted(launches), "skipped": self.skipped, "heat": self._heat_name(),
                  "bytes_by_class": bytes_by_class(chunks), **moved,
                  "deferred_bytes": plan["deferred_bytes"], "no_room_bytes": plan["no_room_bytes"],
                  "budget_bytes": self.budget, "seconds": round(ended - started, 3),
                  "cpu_seconds": round(cpu, 3), "cpu_seconds_total": round(self.cpu_total, 3),
                  "cpu_percent": round(100 * cpu / (ended - since), 2) if ended > since else None}
        if self.heat_note:
            record["heat_note"] = self.heat_note
        self.records.audit(action="enforce_round", **record)
        return record

    def _heat_name(self):
        if self.heat is None:
            return "unmeasured"
        return "page_idle" if self.heat is self.bitmap else "damon"

    def _measure(self):
        chunks, launches = [], {}
        for pid in self.armed:
            try:
                found = measure(self.tree, pid, self._maps(pid), self.heat, locate)
            except OSError:
                continue  # exited since it was armed
            launches[pid] = launch_name(self.tree, pid)
            chunks.extend(found)
        return chunks, launches

    def _move(self, moves):
        by_rule, failed, total = {}, {}, 0
        for move in moves:
            try:
                effect = move_located(move["pid"], move["addresses"], move["from_nodes"], move["to_node"])
            except OSError as exc:
                failed[exc.strerror or str(exc)] = failed.get(exc.strerror or str(exc), 0) + len(move["addresses"])
                continue
            done = sum(effect["moved_pages_from_node"].values()) * PAGE
            rule = self.policy["rules"][move["rule"]].get("id") or f"rules[{move['rule']}]"
            per_node = by_rule.setdefault(rule, {})
            per_node[str(move["to_node"])] = per_node.get(str(move["to_node"]), 0) + done
            total += done
            for name, count in effect["failed"].items():
                failed[name] = failed.get(name, 0) + count
        return {"moved_bytes": total, "moved_bytes_by_rule": by_rule, "failed_pages": failed}


def _resolve(chunk):
    """Every present page of a chunk that is to move, and its node (the round measured a sample)."""
    addresses = present_addresses(chunk)
    return addresses, locate(chunk["pid"], addresses)


def _rss_kib(tree, pid):
    status = parse_status(tree.read("proc", str(pid), "status", default="") or "")
    return int((status.get("VmRSS") or "0 kB").split()[0])


def _cpu():
    t = os.times()
    return t.user + t.system


def enforce(tree, records, raw, interval=None, rounds=None, only_pids=None, out=None):
    """Run the daemon until `rounds` rounds are done or a stop signal comes; return the exit status.

    A refused policy, or a daemon already running, changes nothing and returns 2.
    """
    out = out or sys.stdout
    try:
        policy = load_policy(tree, raw, interval)
    except SchemaError as exc:
        return _refuse(records, raw, str(exc), out)
    other = running(tree, records)
    if other:
        return _refuse(records, raw, f"an enforce daemon is already running (pid {other['pid']}); "
                       "`llamas-agent undo` stops it", out)
    daemon = Daemon(tree, records, policy, raw, interval, only_pids)
    records.push_undo({"type": "enforce", "pid": daemon.me[0], "starttime": daemon.me[1],
                       "journal": daemon.journal.path})
    records.audit(action="enforce", status="started", policy=policy.get("name"), policy_sha256=daemon.digest,
                  interval_s=daemon.interval, rounds=rounds)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        stopped_by = _loop(daemon, rounds, out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    records.audit(action="enforce", status="stopped", policy_sha256=daemon.digest, stopped_by=stopped_by,
                  cpu_seconds_total=round(daemon.cpu_total, 3))
    return 0


def _loop(daemon, rounds, out):
    """Rounds until done; the name of the stop signal, or None."""
    daemon.arm_all()
    index, last = 0, time.monotonic()
    while rounds is None or index < rounds:
        stop = daemon.wait(daemon.interval)
        if stop:
            return stop
        record = daemon.round(index, last)
        last = time.monotonic()
        out.write(json.dumps(record, sort_keys=True) + "\n")
        out.flush()
        index += 1
    return None


def _refuse(records, raw, why, out):
    records.audit(action="enforce", status="rejected", policy_sha256=hashlib.sha256(raw).hexdigest(), reason=why)
    out.write(json.dumps({"accepted": False, "error": why}) + "\n")
    return 2


def restore(tree, records, entry):
    """Undo one enforce session: stop its daemon, then move every journalled page back to its first node."""
    stopped = _stop(tree, entry)
    journal = records.load(entry["journal"], {})
    restored, failed, gone = 0, {}, []
    for key, runs in journal.items():
        pid, start = (int(x) for x in key.split(":"))
        if proc_identity(tree, pid) != (pid, start):
            gone.append(pid)
            continue
        for node, addresses in _by_node(runs).items():
            try:
                effect = move_located(pid, addresses, locate(pid, addresses), node)
            except OSError as exc:
                failed[exc.strerror or str(exc)] = failed.get(exc.strerror or str(exc), 0) + len(addresses)
                continue
            restored += sum(effect["moved_pages_from_node"].values())
            for name, count in effect["failed"].items():
                failed[name] = failed.get(name, 0) + count
    try:
        os.unlink(entry["journal"])
    except FileNotFoundError:
        pass
    return {"daemon": stopped, "restored_pages": restored, "failed_pages": failed, "exited_processes": gone}


def _by_node(runs):
    out = {}
    for start, count, node in runs:
        out.setdefault(node, []).extend(start + i * PAGE for i in range(count))
    return out


def _stop(tree, entry):
    """'stopped' (SIGTERM; SIGKILL after STOP_WAIT_S), 'not running', or 'did not stop'."""
    pid, ident = entry["pid"], (entry["pid"], entry["starttime"])
    if proc_identity(tree, pid) != ident:
        return "not running"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        os.kill(pid, sig)
        deadline = time.monotonic() + STOP_WAIT_S
        while proc_identity(tree, pid) == ident and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc_identity(tree, pid) != ident:
            return "stopped"
    return "did not stop"
