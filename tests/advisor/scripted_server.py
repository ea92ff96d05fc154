"""A real HTTP server on 127.0.0.1 that speaks the chat-completions API and answers from a script.

Each POST to /v1/chat/completions takes the next step of the script: a reply
text (with a finish reason), tool calls, an HTTP error status, or a delay longer
than the client will wait.  Every request body is recorded, so tests can check what
the client sent.  With `reject_json_schema`, it answers the OpenAI
`json_schema` response format with a 500, as llama-cpp-python's server does,
without using a step.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

MODEL = "scripted-model"


@dataclass(frozen=True)
class Step:
    content: str | None = None
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"
    tool_calls: list[dict] | None = None  # function calls, as the API sends them


def call_tools(*calls: tuple[str, dict], content: str | None = None) -> Step:
    """A 200 answer that calls tools: (name, arguments) pairs, numbered call-1, call-2, ..."""
    return Step(content, finish_reason="tool_calls", tool_calls=[
        {"id": f"call-{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls, 1)])


def reply(content: str | dict, finish_reason: str = "stop") -> Step:
    """A 200 answer with this text (a dict is sent as its JSON)."""
    return Step(content if isinstance(content, str) else json.dumps(content), finish_reason=finish_reason)


class ScriptedServer:
    """Serves `script` on a free loopback port; a context manager that stops it."""

    def __init__(self, script: list[Step], reject_json_schema: bool = False):
        self.script = list(script)
        self.reject_json_schema = reject_json_schema
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def completions(self) -> list[dict]:
        return [r for r in self.requests if "messages" in r]

    def _next(self, body: dict) -> Step:
        with self._lock:
            self.requests.append(body)
            if self.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return Step("json_schema is not supported", status=500)
            if not self.script:
                return Step("the script has no more steps", status=500)
            return self.script.pop(0)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model",
                                                                 "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                step = server._next(body)
                if step.delay:
                    time.sleep(step.delay)
                if step.status != 200:
                    self._send(step.status, {"error": {"message": step.content or "error", "type": "server_error"}})
                    return
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", MODEL),
                    "choices": [{"index": 0, "finish_reason": step.finish_reason,
                                 "message": {"role": "assistant", "content": step.content,
                                             **({"tool_calls": step.tool_calls} if step.tool_calls else {})}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        return Handler
