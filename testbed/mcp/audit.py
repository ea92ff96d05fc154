"""The host's record of one MCP session: a JSON-lines file, one line per tool call, written as it happens.

Each line holds the call's sequence number, time, tool, arguments, whether it
succeeded, and its result or its error, so that what an agent did to a guest
can be read back after the session, whatever became of the guest.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..image import cache_root


def default_path(topology: str) -> Path:
    """A fresh file under the testbed's cache: mcp-audit/<UTC time>-<topology>.jsonl."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return cache_root() / "mcp-audit" / f"{stamp}-{topology}.jsonl"


class AuditLog:
    """Appends one JSON line per call, the file opened for that line alone: a call that ends while the
    command shuts down (from the transport's thread) is still written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._seq = 0
        self._lock = threading.Lock()

    def record(self, tool: str, arguments: Any, ok: bool, result: Any = None, error: str | None = None,
               seconds: float | None = None) -> None:
        with self._lock:
            self._seq += 1
            line = {"seq": self._seq, "at": datetime.now(UTC).isoformat(timespec="milliseconds"), "tool": tool,
                    "arguments": arguments, "ok": ok, "seconds": None if seconds is None else round(seconds, 3)}
            line["result" if ok else "error"] = result if ok else error
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, default=str) + "\n")


def read(path: Path) -> list[dict]:
    """Every record of an audit file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

