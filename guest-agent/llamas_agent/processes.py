"""Processes as the kernel sees them: identity, memory per node, policy, CPUs, CPU time.

Names and command lines are untrusted text (any process chooses its own), so
they are bounded and their non-printable characters escaped before they reach
the host or an LLM prompt.
"""

import os
import time

from .sysfs import parse_cpulist

PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread
NAME_MAX_CHARS = 64
CMDLINE_MAX_CHARS = 256
PAGE_KIB = 4
CPU_SAMPLE_S = 0.25  # CPU use is measured over this window: lifetime totals hide what runs now
SCHED_POLICIES = {0: "normal", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}


def sanitize(text, limit):
    """Printable ASCII kept, everything else escaped; cut to `limit` characters with a marker."""
    out = []
    for ch in text:
        if " " <= ch <= "~" and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    joined = "".join(out)
    return joined if len(joined) <= limit else joined[:limit - 3] + "..."


def parse_stat(text):
    """Fields of /proc/PID/stat after the comm (which may hold spaces and parentheses)."""
    head, _, tail = text.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    # fields[0] is state (field 3 of proc(5)); field N of proc(5) is fields[N - 3].
    return {"comm": comm, "state": fields[0], "ppid": int(fields[1]), "flags": int(fields[6]),
            "utime": int(fields[11]), "stime": int(fields[12]), "nice": int(fields[16]),
            "num_threads": int(fields[17]), "starttime": int(fields[19]) if len(fields) > 19 else None,
            # Linux >= 2.5.19 writes both; a shorter line (an old kernel, a test tree) lacks them.
            "processor": int(fields[36]) if len(fields) > 36 else None,
            "policy": int(fields[38]) if len(fields) > 38 else 0}


def parse_status(text):
    """{'Cpus_allowed_list': '0-1', 'VmRSS': '1234 kB', ...}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_numa_maps(text):
    """Resident KiB per node and the policy covering most mappings.

    numa_maps shows each mapping's policy, or the task's own where the mapping
    has none, so the most common policy string is the task's policy in practice.
    """
    per_node, policies = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        policies[parts[1]] = policies.get(parts[1], 0) + 1
        page_kib, counts = PAGE_KIB, {}
        for item in parts[2:]:
            key, _, value = item.partition("=")
            if key.startswith("N") and key[1:].isdigit() and value.isdigit():
                counts[int(key[1:])] = int(value)
            elif key == "kernelpagesize_kB" and value.isdigit():
                page_kib = int(value)
        for node, pages in counts.items():
            per_node[node] = per_node.get(node, 0) + pages * page_kib
    policy = max(policies, key=policies.get) if policies else None
    return per_node, policy


def parse_maps(text):
    """[(start, end, perms, name)] from /proc/PID/maps."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        out.append((int(lo, 16), int(hi, 16), parts[1], parts[5] if len(parts) > 5 else ""))
    return out


def is_kernel_thread(tree, pid):
    """True for kernel threads (PF_KTHREAD); None if the process does not exist."""
    text = tree.read("proc", str(pid), "stat")
    if text is None:
        return None
    return bool(parse_stat(text)["flags"] & PF_KTHREAD)


def node_usage_kib(tree, pid):
    """{node: KiB} resident for pid now, from numa_maps; None if it is gone."""
    text = tree.read("proc", str(pid), "numa_maps")
    return None if text is None else parse_numa_maps(text)[0]


def cpu_ticks(tree, pid):
    """utime + stime of pid (clock ticks), or None if it is gone."""
    text = tree.read("proc", str(pid), "stat")
    if text is None:
        return None
    stat = parse_stat(text)
    return stat["utime"] + stat["stime"]


def gather_process(tree, pid, clk_tck, since=None):
    """One user process as a dict, or None for kernel threads and processes that vanished.

    With `since` = (CPU ticks, monotonic time) read earlier, `cpu_percent` is its CPU use
    (percent of one CPU) from then to now; otherwise None.
    """
    stat_text = tree.read("proc", str(pid), "stat")
    if stat_text is None:
        return None
    stat = parse_stat(stat_text)
    if stat["flags"] & PF_KTHREAD:
        return None  # most pids of an idle guest: decided by one read
    status_text = tree.read("proc", str(pid), "status")
    if status_text is None:
        return None
    status = parse_status(status_text)
    per_node, policy = parse_numa_maps(tree.read("proc", str(pid), "numa_maps", default="") or "")
    raw_cmdline = _read_bytes(tree.path("proc", str(pid), "cmdline"))
    cmdline = raw_cmdline.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return {
        "pid": pid,
        "ppid": stat["ppid"],
        "name": sanitize(stat["comm"], NAME_MAX_CHARS),
        "cmdline": sanitize(cmdline, CMDLINE_MAX_CHARS),
        "state": stat["state"],
        "threads": stat["num_threads"],
        "rss_kib": _kib(status.get("VmRSS")),
        "rss_kib_by_node": {str(n): kib for n, kib in sorted(per_node.items())},
        "mempolicy": policy,
        "cpus_allowed": parse_cpulist(status.get("Cpus_allowed_list", "")),
        "mems_allowed": parse_cpulist(status.get("Mems_allowed_list", "")),
        "cpu_seconds": round((stat["utime"] + stat["stime"]) / clk_tck, 2),
        "cpu_percent": _cpu_percent(stat["utime"] + stat["stime"], clk_tck, since),
        "last_cpu": stat["processor"],
        "nice": stat["nice"],
        "sched_policy": SCHED_POLICIES.get(stat["policy"], str(stat["policy"])),
    }


def _cpu_percent(ticks, clk_tck, since):
    if since is None or since[0] is None:
        return None
    elapsed = time.monotonic() - since[1]
    return round(100 * (ticks - since[0]) / clk_tck / elapsed, 1) if elapsed > 0 else None


def _kib(text):
    try:
        return int((text or "0 kB").split()[0])
    except ValueError:
        return 0


def _read_bytes(path, limit=4 * CMDLINE_MAX_CHARS):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def pids(tree):
    """Numeric entries of /proc, sorted."""
    try:
        names = os.listdir(tree.path("proc"))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def gather_processes(tree, skip_pids=(), cpu_sample_s=CPU_SAMPLE_S):
    """Every user process (kernel threads skipped), except `skip_pids`, with its CPU use (percent of
    one CPU) over the last `cpu_sample_s` seconds."""
    clk_tck = os.sysconf("SC_CLK_TCK")
    listed = [pid for pid in pids(tree) if pid not in skip_pids]
    started = time.monotonic()
    before = {pid: cpu_ticks(tree, pid) for pid in listed}
    if cpu_sample_s:
        time.sleep(cpu_sample_s)
    out = []
    for pid in listed:
        proc = gather_process(tree, pid, clk_tck, since=(before[pid], started))
        if proc is not None:
            out.append(proc)
    return out
