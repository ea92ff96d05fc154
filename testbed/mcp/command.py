"""`testbed mcp TOPOLOGY` and `testbed agent-loop TOPOLOGY --workload W`: registered on the `testbed` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from rich.console import Console

from ..launcher import BootOptions, load_topology
from ..llm_client import DEFAULT_TIMEOUT_S
from . import audit, loop, server
from .budget import Budget
from .machine import LATENCY_MODES, started
from .tools import Toolbox

err = Console(stderr=True)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Boot, serve MCP on stdio until the client goes, shut down."""
    topo = load_topology(args.topology)
    budget = Budget(actions=args.max_actions, guest_seconds=args.max_guest_seconds, calls=args.max_calls)
    path = args.audit or audit.default_path(topo.name)
    options = BootOptions(accel=args.accel, append=args.append, boot_timeout=args.boot_timeout)
    with contextlib.ExitStack() as stack:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the MCP wire: nothing else may reach it
            machine = stack.enter_context(started(topo, args.latency, options, err, args.fast_node_free_mib))
        log = audit.AuditLog(path)
        stack.callback(log.close)
        err.print(f"[dim]{topo.name}: serving MCP on stdio ({args.latency} latency); audit file {path}[/dim]")
        runner = server.MainThreadRunner()
        server.serve_stdio(server.build(Toolbox(machine, budget), log, runner), runner)
        err.print(f"[dim]{topo.name}: the client has gone; shutting the guest down[/dim]")
    return 0


def _add_session_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("topology", help="topology name or file")
    p.add_argument("--latency", choices=LATENCY_MODES, default="advertised",
                   help="emulated: TCG with the latency plugin (slow nodes feel slow, per-node counters)")
    p.add_argument("--fast-node-free-mib", type=int, metavar="MIB",
                   help="hold the fastest node down to this much free memory (as an evaluation matrix can)")
    p.add_argument("--max-actions", type=int, default=20, help="hint documents the session may apply")
    p.add_argument("--max-guest-seconds", type=float, default=1800, help="guest time for workloads and DAMON")
    p.add_argument("--max-calls", type=int, default=500, help="tool calls of any kind")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="advertised mode only (emulated mode is TCG)")
    p.add_argument("--append", default="", help="extra kernel command-line arguments")
    p.add_argument("--boot-timeout", type=float, default=300.0, help="seconds to wait for SSH")


def add_parser(sub) -> None:
    """Register `mcp` and `agent-loop` on the `testbed` command's subparsers."""
    m = sub.add_parser("mcp", help="boot a topology and serve it to an agent over MCP (stdio)")
    _add_session_args(m)
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
    _add_session_args_loop(a)
    a.set_defaults(func=loop.cmd_agent_loop)


def _add_session_args_loop(p: argparse.ArgumentParser) -> None:
    """The server's options that the loop passes on to its `testbed mcp`."""
    p.add_argument("--latency", choices=LATENCY_MODES, default="emulated")
    p.add_argument("--fast-node-free-mib", type=int, metavar="MIB", default=None)
    p.add_argument("--max-actions", type=int, default=20)
    p.add_argument("--max-guest-seconds", type=float, default=3600)
