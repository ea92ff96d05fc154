"""The MCP server: the toolbox's methods as typed MCP tools, the audit trail, and serving over stdio.

Tool calls run one at a time on the thread that owns the guest (the main
thread under `testbed mcp`): that is where Ctrl-C and SIGTERM arrive, so an
interrupt in the middle of a tool unwinds through the machine's shutdown like
any other command.  The stdio transport runs in a daemon thread beside it.
A tool that fails answers with an error result whose text says what went
wrong (never a traceback); every call, including calls the SDK refuses for
arguments that do not fit the schema, goes to the audit file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..hints import Hint, HintDocument
from ..state import GuestState
from .audit import AuditLog
from .budget import BudgetExceeded
from .tools import (
    ApplyOutcome,
    CounterSnapshot,
    MachineDescription,
    Toolbox,
    ToolFailure,
    UndoOutcome,
    WorkloadList,
    WorkloadRun,
)

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], Awaitable[T]]
ERROR_CHARS = 3000

INSTRUCTIONS = """This server is one guest machine of the LLaMaS testbed: a Linux kernel on memory devices that \
differ (DRAM, CXL, NVM, HBM) and perhaps cores of different speed. Start with describe_machine (the \
administrator's account and the topology's figures) and gather_state (the kernel's view: nodes, knobs, \
processes). Change placement only with apply_hints (try dry_run first); every hint is checked by the agent in \
the guest and can be undone with undo. run_workload measures a workload (its figures and, in emulated mode, \
which node served its memory traffic). The session has a budget of applied documents, guest seconds and calls; \
every result says what is left."""


class MainThreadRunner:
    """Runs each tool call on the thread that calls `serve` (one at a time), and hands back its result."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()

    async def __call__(self, fn: Callable[[], T]) -> T:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return await asyncio.wrap_future(future)

    def serve(self, until: threading.Event, poll_s: float = 0.2) -> None:
        """Run queued calls until `until` is set; an interrupt (a BaseException) ends the call and is raised."""
        while not until.is_set():
            try:
                fn, future = self._jobs.get(timeout=poll_s)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting tool, which words it
                future.set_exception(exc)
            except BaseException:
                future.set_exception(RuntimeError("the server is shutting down"))
                raise


def in_worker_thread() -> Runner:
    """A runner for in-process use (tests): calls go to a worker thread, one at a time."""
    lock = threading.Lock()

    def locked(fn):
        with lock:
            return fn()

    async def run(fn):
        return await anyio.to_thread.run_sync(functools.partial(locked, fn))

    return run


def message(exc: Exception) -> str:
    """What the agent reads about a failure: the exception's own words, bounded, never a traceback."""
    text = str(exc).strip()
    if not isinstance(exc, ToolFailure | BudgetExceeded) or not text:
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " ..."


class AuditTrail:
    """Server middleware: every tools/call, its arguments and its result or error, into the audit log."""

    def __init__(self, log: AuditLog):
        self.log = log

    async def __call__(self, ctx, call_next):
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params = dict(ctx.params or {})
        tool, arguments = params.get("name"), params.get("arguments")
        started = time.monotonic()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            self.log.record(tool, arguments, False, error=f"{type(exc).__name__}: {exc}",
                            seconds=time.monotonic() - started)
            raise
        data = result.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(result, BaseModel) \
            else dict(result or {})
        seconds = time.monotonic() - started
        if data.get("isError"):
            text = " ".join(c.get("text", "") for c in data.get("content", []) if isinstance(c, dict))
            self.log.record(tool, arguments, False, error=text, seconds=seconds)
        else:
            self.log.record(tool, arguments, True, result=data.get("structuredContent", data.get("content")),
                            seconds=seconds)
        return result


def _quietly(make: Callable[[], T]) -> T:
    """Construct without the SDK's logging set-up: it gives the root logger a handler, which would show
    records that loggers below it let through at INFO (paramiko's) on every command's stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return make()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def build(toolbox: Toolbox, log: AuditLog, runner: Runner | None = None) -> MCPServer:
    """The MCP server for one session on `toolbox`'s machine."""
    run = runner or in_worker_thread()
    server = _quietly(lambda: MCPServer(name="llamas-testbed", instructions=INSTRUCTIONS,
                                        middleware=[AuditTrail(log)], log_level="WARNING"))

    async def call(tool: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def job():
            toolbox.budget.call(tool)
            return fn(*args, **kwargs)
        try:
            return await run(job)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear error result
            raise ToolError(message(exc)) from None

    @server.tool()
    async def describe_machine() -> MachineDescription:
        """The machine: the administrator's description of its memory devices and cores, the topology file's
        figures (nodes, HMAT latency and bandwidth, distances, core speeds), the latency mode and the budget left."""
        return await call("describe_machine", toolbox.describe_machine)

    @server.tool()
    async def gather_state(
        damon_seconds: Annotated[float | None, Field(description="sample memory accesses with DAMON for this "
                                                     "many seconds (at most 30; counts as guest time)")] = None,
        damon_pids: Annotated[list[int] | None, Field(description="processes DAMON watches (default: the "
                                                      "largest)")] = None,
    ) -> GuestState:
        """The guest kernel's state now: nodes with free memory, tiering knobs, placement counters from
        /proc/vmstat, and every user process with its resident memory per node, CPU use and policy."""
        return await call("gather_state", toolbox.gather_state, damon_seconds, damon_pids)

    @server.tool()
    async def apply_hints(
        hints: Annotated[list[Hint], Field(max_length=64, description="placement hints, applied in order")],
        dry_run: Annotated[bool, Field(description="only check every hint against the running machine")] = False,
        source: Annotated[str | None, Field(max_length=200, description="who proposes them")] = None,
    ) -> ApplyOutcome:
        """Give hints to the guest agent, which checks each against the running machine (live process, node
        with memory, room on the target, online CPUs, a value the kernel accepts) before it changes anything,
        then applies it; a refused hint says why and changes nothing. A dry run checks only and is free; each
        applied document counts against the session's action budget. undo restores knobs, affinities, nice
        levels and launch policies."""
        document = HintDocument(source=source or "mcp", hints=hints)
        return await call("apply_hints", toolbox.apply_hints, document, dry_run)

    @server.tool()
    async def undo() -> UndoOutcome:
        """Restore what applied hints changed (knobs, CPU affinities, nice levels and classes, launch
        policies). Page moves stay: moving pages back is a new hint. Always allowed, free."""
        return await call("undo", toolbox.undo)

    @server.tool()
    async def list_workloads() -> WorkloadList:
        """The workloads run_workload can run: what each does, its headline figure, its parameters."""
        return await call("list_workloads", toolbox.list_workloads)

    @server.tool()
    async def run_workload(
        name: Annotated[str, Field(description="a workload from list_workloads")],
        params: Annotated[dict[str, int | float | str] | None, Field(description="parameters that override "
                                                                     "the workload's defaults")] = None,
        time_limit_s: Annotated[float, Field(gt=0, le=3600, description="seconds the whole run may take; "
                                             "reserved from the session's guest time")] = 300.0,
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 1,
    ) -> WorkloadRun:
        """Run a workload to completion and return its figures: set-up first (latency off), then its timed
        phase (latency on, the plugin's counters zeroed), so the counters show which node served the timed
        phase. It starts under `llamas-agent run --as NAME`: a set_policy hint with launch=NAME applies."""
        return await call("run_workload", toolbox.run_workload, name, params, time_limit_s, seed)

    @server.tool()
    async def read_counters(
        reset: Annotated[bool, Field(description="zero the counters after reading them")] = False,
    ) -> CounterSnapshot:
        """The latency plugin's per-node counters (accesses, reads, writes, cache misses, injected delay) since
        they were last zeroed; emulated mode only."""
        return await call("read_counters", toolbox.read_counters, reset)

    return server


def serve_stdio(server: MCPServer, runner: MainThreadRunner) -> None:
    """Serve MCP on stdin/stdout until the client goes; tool calls run on this (the calling) thread."""
    done = threading.Event()
    failed: list[BaseException] = []

    def transport() -> None:
        try:
            anyio.run(server.run_stdio_async)
        except BaseException as exc:  # noqa: BLE001 - reported by the serving thread
            failed.append(exc)
        finally:
            done.set()

    # A daemon thread (and so are the worker threads it starts): an interrupt of the main thread ends the
    # command without waiting on a blocked read of stdin.
    threading.Thread(target=transport, name="mcp-stdio", daemon=True).start()
    runner.serve(done)
    if failed:
        raise RuntimeError(f"the MCP stdio transport failed: {failed[0]!r}")
