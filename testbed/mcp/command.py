"""`testbed mcp TOPOLOGY` and `testbed agent-loop TOPOLOGY --workload W`: registered on the `testbed` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
from rich.console import Console

from mcp import Client

from .. import llm_server
from ..evaluation import workload as _workload
from ..launcher import BootOptions, load_topology
from ..llm_client import DEFAULT_TIMEOUT_S, ChatClient, Endpoint
from . import audit, loop, server
from .budget import Budget
from .machine import LATENCY_MODES, started
from .tools import Toolbox

err = Console(stderr=True)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Boot, serve MCP on stdio until the client goes, shut down."""
    topo = load_topology(args.topology)
    budget, options = session_settings(args)
    path = args.audit or audit.default_path(topo.name)
    with contextlib.ExitStack() as stack:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the MCP wire: nothing else may reach it
            machine = stack.enter_context(started(topo, args.latency, options, err, args.fast_node_free_mib))
        log = audit.AuditLog(path)
        err.print(f"[dim]{topo.name}: serving MCP on stdio ({args.latency} latency); audit file {path}[/dim]")
        runner = server.MainThreadRunner()
        server.serve_stdio(server.build(Toolbox(machine, budget), log, runner), runner)
        err.print(f"[dim]{topo.name}: the client has gone; shutting the guest down[/dim]")
    return 0


def _add_session_args(p: argparse.ArgumentParser, latency: str, guest_seconds: float) -> None:
    """The machine and the budget of one session: `testbed mcp` and `testbed agent-loop` alike."""
    p.add_argument("--latency", choices=LATENCY_MODES, default=latency,
                   help="emulated: TCG with the latency plugin (slow nodes feel slow, per-node counters); "
                        "advertised: HMAT figures only")
    p.add_argument("--fast-node-free-mib", type=int, metavar="MIB",
                   help="hold the fastest node down to this much free memory (as an evaluation matrix can)")
    p.add_argument("--max-actions", type=int, default=20, help="hint documents the session may apply")
    p.add_argument("--max-guest-seconds", type=float, default=guest_seconds,
                   help="guest time for workloads and DAMON")
    p.add_argument("--max-calls", type=int, default=500, help="tool calls of any kind")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="advertised mode only (emulated mode is TCG)")
    p.add_argument("--append", default="", help="extra kernel command-line arguments")
    p.add_argument("--boot-timeout", type=float, default=300.0, help="seconds to wait for SSH")


def session_settings(args: argparse.Namespace) -> tuple[Budget, BootOptions]:
    return (Budget(actions=args.max_actions, guest_seconds=args.max_guest_seconds, calls=args.max_calls),
            BootOptions(accel=args.accel, append=args.append, boot_timeout=args.boot_timeout))


def add_parser(sub) -> None:
    """Register `mcp` and `agent-loop` on the `testbed` command's subparsers."""
    m = sub.add_parser("mcp", help="boot a topology and serve it to an agent over MCP (stdio)")
    m.add_argument("topology", help="topology name or file")
    _add_session_args(m, "advertised", 1800)
    m.add_argument("--audit", type=Path, help="the session's audit file (default: the cache's mcp-audit/)")
    m.set_defaults(func=cmd_mcp)

    a = sub.add_parser("agent-loop", help="let an LLM act on a topology through the MCP tools, round by round")
    a.add_argument("topology", nargs="?", help="topology name or file (not with --replay)")
    a.add_argument("--workload", help="the workload measured after every round")
    a.add_argument("--params", action="append", default=[], metavar="KEY=VALUE",
                   help="a workload parameter (repeatable)")
    a.add_argument("--rounds", type=int, default=3, help="rounds of acting and measuring after the baseline")
    a.add_argument("--out", type=Path, help="folder for transcript.json, figures.json, figures.csv, audit.jsonl")
    a.add_argument("--endpoint", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, else a local "
                                      "llama.cpp server)")
    a.add_argument("--model", help="model name (default: $LLAMAS_MODEL, else the server's first)")
    a.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per LLM request")
    a.add_argument("--tool-mode", choices=("auto", "native", "json"), default="auto",
                   help="native: the API's function calling; json: one JSON tool call per answer, shaped by a "
                        "schema (for servers whose chat template has no tools); auto: json for the local server")
    a.add_argument("--max-turns", type=int, default=8, help="model answers per round (each may call tools)")
    a.add_argument("--time-limit", type=float, default=600, help="seconds per workload run")
    a.add_argument("--replay", type=Path, metavar="TRANSCRIPT",
                   help="rebuild the figures files from a transcript, without the model or a guest")
    a.add_argument("--answers-from", type=Path, metavar="TRANSCRIPT",
                   help="run again with the model's turns taken from a transcript instead of asking a model")
    _add_session_args(a, "emulated", 3600)
    a.set_defaults(func=cmd_agent_loop)


def _params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"testbed agent-loop: --params {pair!r}: give KEY=VALUE")
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                value = kind(value)
                break
        params[key] = value
    return params


def _say(rows: list[dict], out: Path) -> None:
    for row in rows:
        what = f"{row['primary']}={row['value']:,.1f}" if row["ok"] else f"failed: {str(row['error'])[:100]}"
        err.print(f"round {row['round']}: {what}  model calls={row['model_calls']} errors={row['model_errors']} "
                  f"hints applied={row['hints_applied']} rejected={row['hints_rejected']} "
                  f"miss share={row['miss_share']}", highlight=False)
    print(f"wrote {out}/: transcript.json figures.json figures.csv audit.jsonl")


def cmd_agent_loop(args: argparse.Namespace) -> int:
    """Rounds of acting and measuring on a fresh guest (or, with --replay, the figures of a transcript)."""
    try:
        if args.replay:
            out = args.out or args.replay.parent
            _say(loop.write_figures(out, loop.Transcript.read(args.replay)), out)
            return 0
        if not args.topology or not args.workload or not args.out:
            raise SystemExit("testbed agent-loop: give TOPOLOGY, --workload and --out (or --replay TRANSCRIPT)")
        _workload.load(_workload.resolve(args.workload))
        recorded = loop.Transcript.read(args.answers_from) if args.answers_from else None
    except (OSError, ValueError) as exc:  # a missing or malformed file, an unknown workload
        raise SystemExit(f"testbed agent-loop: {exc}") from None
    topo = load_topology(args.topology)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = loop.Settings(args.workload, _params(args.params), args.rounds, args.out, args.max_turns,
                             args.time_limit)
    budget, options = session_settings(args)
    with contextlib.ExitStack() as stack:
        if recorded is not None:
            model, endpoint = loop.RecordedModel(recorded, recorded.tool_mode == "native"), "none (recorded)"
            mode = recorded.tool_mode
        else:
            model, endpoint, mode = _model(args, stack)
        transcript = loop.Transcript(topo.name, settings.workload, settings.params, settings.rounds, model.name,
                                     endpoint, mode, args.latency, datetime.now(UTC).isoformat(timespec="seconds"))
        # An interrupted loop keeps the figures of the rounds it finished.
        stack.callback(lambda: transcript.events and _say(loop.write_figures(args.out, transcript), args.out))
        machine = stack.enter_context(started(topo, args.latency, options, err, args.fast_node_free_mib))
        log = audit.AuditLog(args.out / "audit.jsonl")
        mcp_server = server.build(Toolbox(machine, budget), log)

        async def main() -> loop.Transcript:
            async with Client(mcp_server) as client:
                return await loop.run(client, model, settings, transcript)

        anyio.run(main)
    return 0


def _model(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[loop.Model, str, str]:
    """The model to ask: the endpoint named, or the local llama.cpp server (started here, stopped on exit)."""
    endpoint = Endpoint.resolve(args.endpoint, args.model, None, args.timeout)
    local = endpoint is None
    if local:
        served = stack.enter_context(llm_server.local_server())
        endpoint = Endpoint(served.base_url, served.model, timeout=args.timeout, fold_system=served.fold_system)
    client = ChatClient(endpoint)
    mode = args.tool_mode if args.tool_mode != "auto" else ("json" if local else "native")
    name = client.model()
    model = loop.NativeModel(client, name) if mode == "native" else loop.JsonModel(client, name)
    return model, "local llama.cpp server" if local else endpoint.base_url, mode
