"""`testbed advise TOPOLOGY --state STATE.json`: ask the advisor for hints, touching no VM;
`testbed advise TOPOLOGY --policy`: ask it for a standing placement policy from the description alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import policy_advice
from . import state as state_mod
from .advisor import Advice, Advisor, PolicyAdvice
from .launcher import load_topology
from .llm_client import DEFAULT_TIMEOUT_S, Endpoint
from .prompt import DEFAULT_BUDGET_TOKENS


def read_text(path: Path, what: str) -> str:
    """A file's text, or a clear error naming the file."""
    try:
        return path.read_text()
    except OSError as exc:
        raise state_mod.StateError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def load_state(path: Path) -> state_mod.GuestState:
    """A state file written by `llamas-agent gather`; errors name the file."""
    text = read_text(path, "state")
    try:
        return state_mod.parse(text)
    except state_mod.StateError as exc:
        raise state_mod.StateError(f"{path}: {exc}") from None


def cmd_advise(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    if args.policy:
        return _advise_policy(args, topo)
    guest_state = load_state(args.state)
    notes = read_text(args.notes, "notes") if args.notes else None
    endpoint = Endpoint.resolve(args.endpoint, args.model, None, args.timeout, args.system_in_user)
    with Advisor(endpoint, refresh=args.refresh) as advisor:
        advice = advisor.advise(topo, guest_state, notes, args.budget)
    if args.json:
        print(json.dumps(advice.to_json()))
    else:
        print_advice(Console(), advice)
    return 0


def _advise_policy(args: argparse.Namespace, topo) -> int:
    notes = read_text(args.notes, "notes") if args.notes else None
    endpoint = Endpoint.resolve(args.endpoint, args.model, None, args.timeout, args.system_in_user)
    with Advisor(endpoint, refresh=args.refresh) as advisor:
        advice = advisor.advise_policy(topo, notes)
    if args.json:
        print(json.dumps(advice.to_json()))
    else:
        print_policy(Console(), advice)
    return 0


def print_policy(console: Console, advice: PolicyAdvice) -> None:
    """The policy for people: where it came from, its rules and limits, and the document to save."""
    source = "answer cache" if advice.cached else "model"
    console.print(f"model {escape(advice.model)} (from the {source}), prompt {advice.prompt_digest[:16]}"
                  f"{', repaired once' if advice.repaired else ''}", highlight=False)
    for line in policy_advice.summary(advice.policy):
        console.print(f"- {escape(line)}", highlight=False)
    console.print(escape(advice.policy.to_json()), highlight=False, soft_wrap=True)


def print_advice(console: Console, advice: Advice) -> None:
    source = "answer cache" if advice.cached else "model"
    console.print(f"model {escape(advice.model)} (from the {source}), prompt {advice.prompt_digest[:16]}",
                  highlight=False)
    if not advice.hints:
        console.print("no hints")
    for hint in advice.hints:
        fields = {k: v for k, v in hint.dump().items() if k not in ("kind", "reason")}
        console.print(f"- {hint.kind} {escape(json.dumps(fields))}\n  because: {escape(hint.reason or '')}",
                      highlight=False)
    for dropped in advice.dropped:
        console.print(f"[yellow]dropped[/yellow] {escape(json.dumps(dropped.hint))}: {escape(dropped.why)}",
                      highlight=False)
    for why in advice.left_out:
        console.print(f"[dim]left out of the prompt: {escape(why)}[/dim]")


def add_system_in_user(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system-in-user", action="store_true",
                   help="send the instructions in the first user turn (for chat templates that drop "
                        "system turns, e.g. llama-cpp-python --chat_format gemma)")


def add_parser(sub) -> None:
    """Register `advise` on the `testbed` command's subparsers."""
    a = sub.add_parser("advise", help="ask the LLM advisor for hints for a gathered state, or for a placement "
                                      "policy (no VM)")
    a.add_argument("topology", help="topology name or file (its description goes into the prompt)")
    what = a.add_mutually_exclusive_group(required=True)
    what.add_argument("--state", type=Path, help="JSON written by `llamas-agent gather`: ask for hints")
    what.add_argument("--policy", action="store_true",
                      help="ask for a standing placement policy (placement-policy-v1) from the description "
                           "and facts alone, for `llamas-agent enforce`")
    a.add_argument("--notes", type=Path, help="a file of the administrator's notes on the workloads")
    a.add_argument("--endpoint", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, "
                                      "else a local llama.cpp server)")
    a.add_argument("--model", help="model name (default: $LLAMAS_MODEL, else the server's first)")
    a.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request")
    add_system_in_user(a)
    a.add_argument("--budget", type=int, default=DEFAULT_BUDGET_TOKENS, help="prompt budget in tokens")
    a.add_argument("--refresh", action="store_true", help="ask the model even if the answer is cached")
    a.add_argument("--json", action="store_true",
                   help='print {"model", "prompt_digest", "cached", "hints": [...], ...} '
                        '(with --policy: {..., "policy": {...}})')
    a.set_defaults(func=cmd_advise)
