"""Classifying a process's memory per interval: written pages (soft-dirty) and accessed pages (idle page tracking).

One interval is: `arm` (mark the process's present pages idle, then clear its
soft-dirty bits), the interval passes, `measure` (read both back, per chunk).

- Writes: writing "4" to /proc/PID/clear_refs clears the soft-dirty bit of
  every page; bit 55 of a /proc/PID/pagemap entry is set again by the next
  write to that page.
- Accesses: /sys/kernel/mm/page_idle/bitmap (one bit per page frame) marks
  frames idle; the kernel clears the mark when the page's accessed bit was set
  since.  Marking clears the accessed bits without flushing the TLB, and a
  TLB entry that survives lets accesses go unseen (QEMU's software TLB keeps
  every page of a small loop).  clear_refs flushes the process's TLB, so it
  runs after the marking: every later access walks the page table again.
  Debian's kernel has no idle page tracking (CONFIG_IDLE_PAGE_TRACKING is
  off): there, DAMON watches the interval's last seconds (DamonHeat; the agent
  starts and removes its own kdamonds, damon.py).  Without either, heat is
  unmeasured: rules that name a heat do not match, and reads cannot be told
  from untouched memory.

Memory is classified in chunks of private writable anonymous mappings (file-backed
text and shared memory are left alone), cut at 2 MiB virtual boundaries: the unit
a rule acts on.

The daemon does this every interval for every page in scope, under emulation
too, so a chunk is never walked page by page in Python: its present and written
pages are counted from the pagemap bytes (bit 63 and bit 55 are the top bits of
an entry's last two bytes, counted with bytes.translate), and its node is judged
from a sample of SAMPLE_PAGES present pages spread over it (exact for a huge
page, which lies on one node, and for chunks of few pages).  Only a chunk that
is to move is located page by page (`present_addresses`).
"""

import os
import struct
from collections import Counter

from .launch import LAUNCH_ENV

PAGE = 4096
CHUNK_PAGES = 512                 # 2 MiB: a huge page's worth, coarse enough to keep the daemon cheap
CHUNK_BYTES = CHUNK_PAGES * 4096
PRESENT = 1 << 63
SOFT_DIRTY = 1 << 55
PFN_MASK = (1 << 55) - 1
SAMPLE_PAGES = 16                 # pages per chunk whose node is looked up each round
_TOP_BIT = bytes(1 if b & 0x80 else 0 for b in range(256))  # translate table: a byte -> its bit 7
IDLE_BITMAP = "sys/kernel/mm/page_idle/bitmap"
WRITE_HEAVY_SHARE = 0.25          # a quarter of a chunk's pages written in one interval
HOT_SHARE = 0.5                   # half of a chunk's pages accessed in one interval (or of DAMON's samples)
ANON_NAMES = ("", "[heap]")


def scoped_mappings(maps):
    """[(start, end, name)] of the private writable anonymous mappings in parse_maps() output."""
    return [(lo, hi, name) for lo, hi, perms, name in maps
            if perms[1:2] == "w" and perms[3:4] == "p" and (name in ANON_NAMES or name.startswith("[anon:"))]


def read_pagemap_bytes(tree, pid, start, end):
    """The raw pagemap of [start, end) of pid: 8 little-endian bytes per page (empty if the process is gone)."""
    count = (end - start) // PAGE
    try:
        fd = os.open(tree.path("proc", str(pid), "pagemap"), os.O_RDONLY)
    except OSError:
        return b""
    try:
        data = os.pread(fd, count * 8, start // PAGE * 8)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return data[:len(data) // 8 * 8]


def read_pagemap(tree, pid, start, end):
    """The 64-bit pagemap entries of [start, end) of pid (empty if the process is gone)."""
    data = read_pagemap_bytes(tree, pid, start, end)
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


class IdleBitmap:
    """The kernel's idle page bitmap: 64-bit words, bit (pfn % 64) of word (pfn // 64)."""

    def __init__(self, tree):
        self.path = tree.path(IDLE_BITMAP)
        self.available = os.access(self.path, os.R_OK | os.W_OK)

    def mark(self, pfns):
        """Mark these frames idle (a set bit marks; clear bits are ignored by the kernel)."""
        words = _words(pfns)
        with open(self.path, "r+b", buffering=0) as f:
            for first, masks in _runs(words):
                os.pwrite(f.fileno(), struct.pack(f"<{len(masks)}Q", *masks), first * 8)

    def share(self, pid, start, entries):
        """Share of a chunk's present pages (its raw pagemap `entries`) accessed since they were marked."""
        pfns = [e & PFN_MASK for (e,) in struct.iter_unpack("<Q", entries) if e & PRESENT]
        idle = self.idle(pfns)
        return sum(1 for pfn in pfns if pfn not in idle) / len(pfns) if pfns else 0.0

    def idle(self, pfns):
        """The subset of `pfns` still idle (not accessed since they were marked)."""
        words = _words(pfns)
        still = set()
        with open(self.path, "rb", buffering=0) as f:
            for first, masks in _runs(words):
                data = os.pread(f.fileno(), len(masks) * 8, first * 8)
                values = struct.unpack(f"<{len(data) // 8}Q", data)
                for i, (value, asked) in enumerate(zip(values, masks)):
                    bits = value & asked
                    still.update((first + i) * 64 + b for b in range(64) if bits >> b & 1)
        return still


def _words(pfns):
    words = {}
    for pfn in pfns:
        words[pfn // 64] = words.get(pfn // 64, 0) | 1 << (pfn % 64)
    return words


def _runs(words, gap=8):
    """[(first word, [mask, ...])] covering the words, one run per stretch with gaps of at most `gap`.

    One read or write per stretch instead of per word: the kernel ignores zero bits.
    """
    runs = []
    for w in sorted(words):
        if runs and w - (runs[-1][0] + len(runs[-1][1])) <= gap:
            first, masks = runs[-1]
            masks.extend([0] * (w - first - len(masks)))
            masks.append(words[w])
        else:
            runs.append((w, [words[w]]))
    return runs


def arm(tree, pid, maps, bitmap):
    """Start an interval for pid: its present pages marked idle (where the kernel tracks idle pages),
    then its soft-dirty bits (and its TLB) cleared."""
    if bitmap.available:
        pfns = [e & PFN_MASK for lo, hi, _ in scoped_mappings(maps)
                for e in read_pagemap(tree, pid, lo, hi) if e & PRESENT and e & PFN_MASK]
        bitmap.mark(pfns)
    with open(tree.path("proc", str(pid), "clear_refs"), "w") as f:
        f.write("4")


def classes(written_share, accessed_share):
    """(heat, write) of a chunk from the shares of its present pages written and accessed in the interval;
    accessed_share None (unmeasured) gives heat None."""
    if accessed_share is not None:
        accessed_share = max(accessed_share, written_share)  # a write is an access, seen or not
    if accessed_share is None:
        heat = None
    else:
        heat = "hot" if accessed_share >= HOT_SHARE else "warm" if accessed_share > 0 else "cold"
    if written_share >= WRITE_HEAVY_SHARE:
        write = "write-heavy"
    elif written_share > 0 or accessed_share:
        write = "read-mostly"
    else:
        write = "untouched"
    return heat, write


class DamonHeat:
    """Accesses as DAMON saw them: a chunk's share is the highest nr_accesses of the regions it overlaps,
    over the samples in one aggregation interval.  Processes DAMON did not watch are unmeasured."""

    def __init__(self, regions, samples):
        self.regions, self.samples = regions, samples  # {"pid": [regions]} from damon.monitor

    def share(self, pid, start, entries):
        regions = self.regions.get(str(pid))
        if regions is None:
            return None
        end = (start // CHUNK_BYTES + 1) * CHUNK_BYTES
        hits = [r["nr_accesses"] for r in regions if r["start"] < end and start < r["end"]]
        return min(1.0, max(hits, default=0) / self.samples)


def measure(tree, pid, maps, heat, locate):
    """The chunks of pid's scoped memory with their classes and pages: a list of dicts.

    Chunks end at 2 MiB virtual boundaries, as transparent huge pages do: move_pages moves a huge page
    whole, so a chunk cut elsewhere would share a huge page with its neighbour, and two chunks of
    different classes would move it back and forth.  `heat` is an IdleBitmap, a DamonHeat or None
    (accesses unmeasured); `locate(pid, addresses)` gives each page's node (validate.locate).
    """
    chunks = []
    for lo, hi, _ in scoped_mappings(maps):
        data = read_pagemap_bytes(tree, pid, lo, hi)
        pos = lo
        while pos < lo + len(data) // 8 * PAGE:
            end = min(hi, (pos // CHUNK_BYTES + 1) * CHUNK_BYTES)
            chunk = _chunk(pid, pos, hi - lo, data[(pos - lo) // PAGE * 8:(end - lo) // PAGE * 8], heat)
            if chunk:
                chunks.append(chunk)
            pos = end
    _place(chunks, pid, locate)
    return chunks


def _chunk(pid, start, region_bytes, entries, heat):
    """One chunk's classes and page sample from its raw pagemap `entries`, or None if no page is present.

    Soft-dirty is counted over all entries: outside swap (this guest has none) only a present page has it.
    """
    flags = entries[7::8].translate(_TOP_BIT)          # 1 where the page is present (bit 63)
    present = flags.count(1)
    if not present:
        return None
    written = min(present, entries[6::8].translate(_TOP_BIT).count(1)) / present  # bit 55
    accessed = heat.share(pid, start, entries) if heat else None
    heat_class, write = classes(written, accessed)
    return {"pid": pid, "start": start, "region_bytes": region_bytes, "heat": heat_class, "write": write,
            "pages": present, "flags": flags, "addresses": _sample(start, flags, present), "nodes": None}


def _sample(start, flags, present):
    """Addresses of up to SAMPLE_PAGES present pages spread over the chunk (all of them in a sparse chunk)."""
    if present <= SAMPLE_PAGES:
        return present_addresses({"start": start, "flags": flags})
    stride = len(flags) / SAMPLE_PAGES
    if present == len(flags):  # every page present (the usual case): no search
        return [start + int(k * stride) * PAGE for k in range(SAMPLE_PAGES)]
    picked = []
    for k in range(SAMPLE_PAGES):
        i = flags.find(1, int(k * stride))
        if i < 0:
            break
        if not picked or start + i * PAGE != picked[-1]:
            picked.append(start + i * PAGE)
    return picked


def present_addresses(chunk):
    """Every present page of a chunk, located one by one only when the chunk is to move."""
    out, flags, i = [], chunk["flags"], chunk["flags"].find(1)
    while i >= 0:
        out.append(chunk["start"] + i * PAGE)
        i = flags.find(1, i + 1)
    return out


def _place(chunks, pid, locate):
    """Fill in each chunk's sampled pages' nodes with one locate call for the whole process, and their
    tally ({node: sampled pages}), which the planner asks several times per chunk and round."""
    addresses = [a for c in chunks for a in c["addresses"]]
    nodes = locate(pid, addresses) if addresses else []
    at = 0
    for c in chunks:
        c["nodes"] = nodes[at:at + len(c["addresses"])]
        c["tally"] = Counter(c["nodes"])
        at += len(c["addresses"])


def launch_name(tree, pid):
    """The launch name `llamas-agent run --as NAME` gave pid (inherited by its children), or None."""
    try:
        with open(tree.path("proc", str(pid), "environ"), "rb") as f:
            environ = f.read(1 << 16)
    except OSError:
        return None
    prefix = LAUNCH_ENV.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("ascii", "replace")[:64]
    return None
