"""Planning one round of moves from classified chunks: rules in order, within room and bandwidth.

Pure functions over plain data, so the choices can be tested without a kernel.
A chunk (classify.measure) takes the first rule whose match it fits; chunks of
earlier rules choose first.  A chunk goes to the first node of its rule's
preference that has room for the pages not already there (a node's free
memory less what it must keep free); a chunk already on a preferred node with
no room ahead of it stays.  Moves stop when the round's bandwidth budget is
spent: the rest waits for the next round.

A chunk's `addresses` and `nodes` are a sample of its `pages` present pages
(classify.py): room, what is left without room and the bytes per class are
estimated from it, and a chunk that is to move is resolved to every page and
its node (`resolve`) before the move is booked.
"""

from collections import Counter

from .classify import PAGE
from .validate import margin_kib


def matches(match, chunk, launch, region_bytes):
    """True when a rule's match fits a chunk (its process's launch name and its mapping's size given)."""
    if "heat" in match and chunk["heat"] != match["heat"]:
        return False  # a heat of None (unmeasured) matches no heat rule
    if "write" in match and chunk["write"] != match["write"]:
        return False
    if "launch" in match and launch != match["launch"]:
        return False
    return not ("min_region_mib" in match and region_bytes < match["min_region_mib"] << 20)


def first_rule(rules, chunk, launch):
    """Index of the first rule that matches the chunk, or None."""
    for i, rule in enumerate(rules):
        if matches(rule["match"], chunk, launch, chunk["region_bytes"]):
            return i
    return None


def room_kib(nodes, keep_free_mib):
    """{node: KiB a round may still fill}: free memory less the larger of the policy's keep-free and the
    agent's own safety margin (validate.margin_kib), never below zero."""
    return {n["id"]: max(0, n["mem_free_kib"] - max(keep_free_mib.get(str(n["id"]), 0) * 1024, margin_kib(n)))
            for n in nodes}


def estimate(chunk, keep):
    """Pages of the chunk whose node satisfies `keep`, scaled from its sample to all its present pages.

    Asked several times per chunk and round, so `keep` is asked per node of the sample's tally, not per page.
    """
    sample = chunk["nodes"]
    hits = sum(count for node, count in tally(chunk).items() if keep(node))
    return hits if len(sample) >= chunk.get("pages", len(sample)) else round(chunk["pages"] * hits / len(sample))


def tally(chunk):
    """{node: sampled pages} of a chunk: classify counts it once per round; counted here where it did not."""
    return chunk.get("tally") or Counter(chunk["nodes"])


def _target(preference, chunk, room):
    """The first preferred node with room for the chunk's pages not yet on it; None if none has."""
    for node in preference:
        need = estimate(chunk, lambda n, node=node: n >= 0 and n != node) * PAGE // 1024
        if need <= room.get(node, 0):
            return node
    return None


def _as_sampled(chunk):
    return chunk["addresses"], chunk["nodes"]


def plan_round(chunks, launches, rules, room, budget_bytes, resolve=_as_sampled):
    """Moves for this round and what was left undone.

    launches: {pid: launch name or None}; room: room_kib() (booked as moves are planned,
    so one chunk leaving a node makes room for the next); budget_bytes: bandwidth x interval;
    resolve(chunk): every present page's address and node (default: the sample is the whole chunk).
    Returns {"moves": [{"pid", "rule", "to_node", "addresses", "from_nodes"}], "deferred_bytes",
    "no_room_bytes"}.
    """
    ranked = sorted(((first_rule(rules, c, launches.get(c["pid"])), i) for i, c in enumerate(chunks)),
                    key=lambda pair: (pair[0] is None, pair))
    moves, left, deferred, no_room = [], budget_bytes, 0, 0
    for rule, index in ranked:
        if rule is None:
            break
        chunk = chunks[index]
        node = _target(rules[rule]["nodes"], chunk, room)
        if node is None:
            no_room += estimate(chunk, lambda n, ok=rules[rule]["nodes"]: n >= 0 and n not in ok) * PAGE
            continue
        guess = estimate(chunk, lambda n, node=node: n >= 0 and n != node)
        if not guess:
            continue  # the sample says it is all there: no page-by-page look
        if guess * PAGE > left:
            deferred += guess * PAGE
            continue
        pages = [(a, n) for a, n in zip(*resolve(chunk), strict=True) if n >= 0 and n != node]
        if not pages:
            continue
        if len(pages) * PAGE > left:
            deferred += len(pages) * PAGE
            continue
        left -= len(pages) * PAGE
        _book(room, pages, node)
        moves.append({"pid": chunk["pid"], "rule": rule, "to_node": node,
                      "addresses": [a for a, _ in pages], "from_nodes": [n for _, n in pages]})
    return {"moves": moves, "deferred_bytes": deferred, "no_room_bytes": no_room}


def _book(room, pages, node):
    kib = PAGE // 1024
    room[node] = room.get(node, 0) - len(pages) * kib
    for _, src in pages:
        room[src] = room.get(src, 0) + kib


def bytes_by_class(chunks):
    """{"heat/write": {node: bytes}} of the chunks as measured (heat "unknown" where unmeasured)."""
    out = {}
    for c in chunks:
        per_node = out.setdefault(f"{c['heat'] or 'unknown'}/{c['write']}", {})
        for n in tally(c):
            if n >= 0:
                per_node[str(n)] = per_node.get(str(n), 0) + estimate(c, lambda m, n=n: m == n) * PAGE
    return out
