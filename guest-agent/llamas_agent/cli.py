"""`llamas-agent` command line.

Modules are imported per command: under TCG every import costs, and `gather`
must stay well under a second.
"""

import argparse
import json
import sys

from .sysfs import Tree, parse_cpulist

APPLY_OK, APPLY_DOCUMENT_REJECTED, APPLY_SOME_REJECTED = 0, 2, 3


def _parser():
    parser = argparse.ArgumentParser(prog="llamas-agent", description="LLaMaS guest agent")
    parser.add_argument("--root", default="/", help="read procfs/sysfs under this directory (for tests)")
    parser.add_argument("--log-dir", default="/var/log/llamas-agent", help="where audit.jsonl goes")
    parser.add_argument("--state-dir", default="/var/lib/llamas-agent", help="where the undo record goes")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("machine", help="print the machine as the kernel sees it (JSON)")
    g = sub.add_parser("gather", help="print nodes, knobs, counters and processes (JSON)")
    g.add_argument("--damon", type=float, metavar="SECONDS", help="also sample access frequency with DAMON")
    g.add_argument("--damon-pids", type=parse_cpulist, default="", metavar="LIST",
                   help="processes DAMON watches, e.g. 120,340 (default: the largest; at most 4)")
    a = sub.add_parser("apply", help="validate and apply a hint document (file, or - for stdin)")
    a.add_argument("hints")
    a.add_argument("--dry-run", action="store_true", help="validate and report, change nothing")
    sub.add_parser("undo", help="restore what apply changed; stop enforce and move its pages back")
    e = sub.add_parser("enforce", help="keep a placement policy (placement-policy-v1) true, round after round")
    e.add_argument("policy", help="policy file, or - for stdin")
    e.add_argument("--interval", type=float, metavar="S", help="seconds per round (default: the policy's)")
    e.add_argument("--rounds", type=int, metavar="N", help="stop after N rounds (default: until stopped)")
    e.add_argument("--pids", type=parse_cpulist, default="", metavar="LIST",
                   help="watch only these processes, e.g. 120,340 (default: every user process of 4 MiB or more)")
    r = sub.add_parser("run", help="run a command under a memory policy: run [--as NAME] [--policy M --nodes L] -- CMD")
    r.add_argument("--as", dest="name", help="use the policy a set_policy hint gave this launch name")
    r.add_argument("--policy", choices=("bind", "preferred", "interleave", "weighted_interleave"))
    r.add_argument("--nodes", type=parse_cpulist, default="", help="node list, e.g. 0-1 or 1")
    r.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def _print(doc):
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _read_document(path, limit):
    """At most limit+1 bytes: enough to tell a document is too big without reading it all."""
    if path == "-":
        return sys.stdin.buffer.read(limit + 1)
    with open(path, "rb") as f:
        return f.read(limit + 1)


def main(argv=None):
    """Run one command; the exit status says how it went."""
    args = _parser().parse_args(argv)
    tree = Tree(args.root)
    if args.command == "machine":
        from .machine import gather_machine
        _print(gather_machine(tree))
        return 0
    if args.command == "gather":
        from .gather import gather_state
        _print(gather_state(tree, damon_seconds=args.damon, damon_pids=args.damon_pids))
        return 0
    from .audit import Records
    records = Records(args.log_dir, args.state_dir)
    if args.command == "apply":
        return _apply(args, tree, records)
    if args.command == "enforce":
        return _enforce(args, tree, records)
    if args.command == "undo":
        from .undo import undo
        _print(undo(tree, records))
        return 0
    return _run(args, records)


def _apply(args, tree, records):
    from .apply import apply_document
    from .hints import MAX_DOCUMENT_BYTES
    try:
        raw = _read_document(args.hints, MAX_DOCUMENT_BYTES)
    except OSError as exc:
        _print({"accepted": False, "error": f"cannot read {args.hints}: {exc.strerror}", "results": []})
        return APPLY_DOCUMENT_REJECTED
    result = apply_document(raw, tree, records, dry_run=args.dry_run)
    _print(result)
    if not result["accepted"]:
        return APPLY_DOCUMENT_REJECTED
    ok = all(r["status"] in ("applied", "would_apply") for r in result["results"])
    return APPLY_OK if ok else APPLY_SOME_REJECTED


def _enforce(args, tree, records):
    from .enforce import enforce
    from .policy import MAX_POLICY_BYTES
    if args.rounds is not None and args.rounds < 1:
        sys.stderr.write("llamas-agent enforce: --rounds must be at least 1\n")
        return APPLY_DOCUMENT_REJECTED
    try:
        raw = _read_document(args.policy, MAX_POLICY_BYTES)
    except OSError as exc:
        _print({"accepted": False, "error": f"cannot read {args.policy}: {exc.strerror}"})
        return APPLY_DOCUMENT_REJECTED
    return enforce(tree, records, raw, args.interval, args.rounds, args.pids)


def _run(args, records):
    from .launch import resolve_policy, run
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        sys.stderr.write("llamas-agent run: no command given\n")
        return 2
    mode, nodes = resolve_policy(records, args.name, args.policy, args.nodes)
    try:
        run(mode, nodes, argv, args.name)
    except OSError as exc:
        sys.stderr.write(f"llamas-agent run: {exc}\n")
    return 127
