"""The advisor: device description + live state -> LLM -> hints that fit the schema and the machine.

One `Advisor` talks to one endpoint: a URL given by option or environment, or
else the local llama.cpp server, started on the first request that the answer
cache cannot serve and stopped when the advisor closes.  Every answer is
stored under a digest of (model, prompt, schema, parameters); a re-run replays
it without asking the model unless told to refresh, so an evaluation can be
repeated exactly with no model at hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from . import advice_schema, llm_client, llm_server, policy_advice, prompt
from .advice_schema import Dropped
from .files import write_atomic
from .hints import HintDocument
from .image import cache_root
from .llm_client import ChatClient, Endpoint
from .policy import PlacementPolicy
from .state import GuestState
from .topology import Topology

# Greedy decoding: the same prompt gives the same answer on the same server build.
DEFAULT_PARAMS = {"temperature": 0.0, "max_tokens": 768, "seed": 0}


@dataclass(frozen=True)
class Advice:
    """Hints for one state, and what names the exchange that produced them."""

    model: str
    prompt_digest: str
    answer_digest: str
    cached: bool
    repaired: bool
    hints: list
    dropped: list[Dropped] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def document(self) -> HintDocument:
        """The hints as the document `llamas-agent apply` reads."""
        return HintDocument(source=f"{self.model} prompt:{self.prompt_digest[:16]}", hints=self.hints)

    def to_json(self) -> dict:
        return {"model": self.model, "prompt_digest": self.prompt_digest, "answer_digest": self.answer_digest,
                "cached": self.cached, "repaired": self.repaired, "hints": [h.dump() for h in self.hints],
                "dropped": [d.to_json() for d in self.dropped], "left_out": self.left_out}


@dataclass(frozen=True)
class PolicyAdvice:
    """A standing placement policy for one machine, and what names the exchange that produced it."""

    model: str
    prompt_digest: str
    answer_digest: str
    cached: bool
    repaired: bool
    policy: PlacementPolicy
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"model": self.model, "prompt_digest": self.prompt_digest, "answer_digest": self.answer_digest,
                "cached": self.cached, "repaired": self.repaired,
                "policy": self.policy.model_dump(by_alias=True, exclude_none=True)}


class AnswerCache:
    """Answers on disk, one JSON file per key, written atomically."""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_root() / "answers"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored entry, or None; an unreadable entry counts as absent and is replaced later."""
        try:
            entry = json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    def put(self, key: str, entry: dict) -> None:
        write_atomic(self._path(key), json.dumps(entry, indent=1, sort_keys=True))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _still_valid(entry: dict | None, parse=advice_schema.parse_answer):
    """A cached answer parsed, or None where there is none or it fails today's checks (a key
    given twice, say, which older versions let through): such an answer is asked for again."""
    try:
        return parse(entry["text"]) if entry else None
    except advice_schema.AnswerInvalid:
        return None


class Advisor:
    """Asks one endpoint (or the local default) for hints; a context manager that frees the server."""

    def __init__(self, endpoint: Endpoint | None = None, cache: AnswerCache | None = None,
                 refresh: bool = False, params: dict | None = None):
        self.endpoint = endpoint
        self.cache = cache or AnswerCache()
        self.refresh = refresh
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self._stack = contextlib.ExitStack()
        self._client: ChatClient | None = None
        self._model: str | None = endpoint.model if endpoint else llm_server.LOCAL_MODEL
        # Part of the cache key: the same messages sent another way are another question.
        self._fold_system = endpoint.fold_system if endpoint else llm_server.LocalServer.fold_system

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the local server if this advisor started one."""
        self._stack.close()
        self._client = None

    def client(self) -> ChatClient:
        """The chat client, starting the local server on first use when no endpoint was named."""
        if self._client is None:
            endpoint = self.endpoint
            if endpoint is None:
                server = self._stack.enter_context(llm_server.local_server())
                endpoint = Endpoint(server.base_url, server.model, fold_system=server.fold_system)
            self._client = ChatClient(endpoint)
        return self._client

    def model(self) -> str:
        if self._model is None:
            self._model = self.client().model()
        return self._model

    def advise(self, topo: Topology, state: GuestState, notes: str | None = None,
               budget_tokens: int = prompt.DEFAULT_BUDGET_TOKENS) -> Advice:
        """Hints for `state` on `topo`: from the cache, else from the model (one repair round)."""
        started = time.monotonic()
        built = prompt.build(topo, state, notes, budget_tokens)
        model, entry, parsed, cached = self._answer(built, advice_schema.response_schema(state),
                                                    advice_schema.parse_answer)
        kept, dropped = advice_schema.check_facts(state, parsed)
        return Advice(model, built.digest, entry["answer_digest"], cached, entry["repaired"], kept, dropped,
                      built.left_out, time.monotonic() - started)

    def advise_policy(self, topo: Topology, notes: str | None = None) -> PolicyAdvice:
        """A placement policy for `topo` from its description and facts: from the cache, else from the model
        (one repair round); it names only nodes the machine has."""
        started = time.monotonic()
        built = policy_advice.build_prompt(topo, notes)
        model, entry, parsed, cached = self._answer(built, policy_advice.response_schema(topo),
                                                    policy_advice.parser(topo))
        return PolicyAdvice(model, built.digest, entry["answer_digest"], cached, entry["repaired"], parsed,
                            time.monotonic() - started)

    def _answer(self, built: prompt.Prompt, schema: dict, parse):
        """(model, cache entry, parsed answer, whether it came from the cache): a cached answer that still
        parses, else the model's (which is cached)."""
        model = self.model()
        key = prompt.digest_of({"model": model, "messages": built.messages, "schema": schema,
                                "params": self.params, "fold_system": self._fold_system})
        entry = None if self.refresh else self.cache.get(key)
        parsed = _still_valid(entry, parse)
        if parsed is not None:
            return model, entry, parsed, True
        entry = self._ask(model, built, schema, key, parse)
        return model, entry, parse(entry["text"]), False

    def _ask(self, model: str, built: prompt.Prompt, schema: dict, key: str,
             parse=advice_schema.parse_answer) -> dict:
        answer = llm_client.ask_structured(self.client(), model, built.messages, schema, self.params, parse)
        entry = {"key": key, "model": model, "endpoint": self.client().endpoint.base_url,
                 "prompt_digest": built.digest, "params": self.params, "mode": answer.mode,
                 "repaired": answer.repaired, "text": answer.text, "answer_digest": text_digest(answer.text),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.cache.put(key, entry)
        return entry
