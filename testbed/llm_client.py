"""Ask any OpenAI-compatible chat endpoint for JSON that fits a schema, with one repair round.

Servers differ in how they take a schema, so the client tries, in order:
1. `response_format={"type": "json_schema", ...}`: OpenAI and vLLM;
2. `{"type": "json_object", "schema": ...}`: llama-cpp-python's server, which
   answers the first form with a 500;
3. `{"type": "json_object"}`: plain JSON mode, the schema only in the prompt.
A server that complains (4xx/5xx) moves the client to the next form, and the
form that worked is kept for the client's later requests.

Every failure is an exception that says what happened: a timeout, a server
error, no server at all, or an answer that was still invalid after repair.
The openai client's own retries are off, so a timeout takes `timeout` seconds
and no more.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import openai

from .advice_schema import AnswerInvalid

DEFAULT_TIMEOUT_S = 120.0
MODES = ("json_schema", "llama_json_object", "json_object")
# Statuses that may mean "I do not understand this response_format"; others (401, 403,
# 404, 429) will not change with another form, so they end the request at once.
_FALLBACK_STATUSES = {400, 415, 422}
T = TypeVar("T")


class LLMError(RuntimeError):
    """The endpoint gave no usable answer."""


class LLMTimeout(LLMError):
    """No answer within the timeout."""


class LLMUnavailable(LLMError):
    """Nothing answered at the endpoint's address."""


class LLMServerError(LLMError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LLMAnswerError(LLMError):
    """The model's answer did not fit the schema, even after one repair round."""


@dataclass(frozen=True)
class Endpoint:
    """Where to ask and whom: options first, then OPENAI_BASE_URL, OPENAI_API_KEY, LLAMAS_MODEL."""

    base_url: str
    model: str | None = None
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    # For chat templates that drop the system turn (llama-cpp-python's "gemma" format does):
    # send the system text at the head of the first user turn, as Gemma's own template does.
    fold_system: bool = False

    @classmethod
    def resolve(cls, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                timeout: float | None = None, fold_system: bool = False) -> Endpoint | None:
        """The endpoint named by options or environment, or None for the local default."""
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            return None
        return cls(url, model or os.environ.get("LLAMAS_MODEL"),
                   api_key or os.environ.get("OPENAI_API_KEY"), timeout or DEFAULT_TIMEOUT_S, fold_system)


@dataclass(frozen=True)
class Reply:
    """One raw reply: its text, the response_format mode used, and whether max_tokens cut it."""

    text: str | None
    mode: str
    cut: bool


@dataclass(frozen=True)
class Answer:
    """The text that passed validation, its parsed value, and how it was obtained."""

    text: str
    value: object
    mode: str
    repaired: bool


def _response_format(mode: str, schema: dict) -> dict:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "hints", "schema": schema, "strict": False}}
    if mode == "llama_json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


class ChatClient:
    """One endpoint, asked for schema-shaped JSON."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        # A local server needs no key, but the client refuses to start without one.
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "no-key",
                                     timeout=endpoint.timeout, max_retries=0)
        self._mode = 0

    def model(self) -> str:
        """The endpoint's model: the one named, else the first the server lists."""
        if self.endpoint.model:
            return self.endpoint.model
        models = self._call(lambda: self._client.models.list().data)
        if not models:
            raise LLMError(f"{self.endpoint.base_url} lists no models; name one with --model")
        return models[0].id

    def complete(self, messages: list[dict], schema: dict, params: dict, model: str) -> Reply:
        """One answer, in the first response_format (from the last one accepted) the server takes."""
        last = None
        for index in range(self._mode, len(MODES)):
            try:
                reply = self._ask(messages, _response_format(MODES[index], schema), params, model)
            except LLMServerError as exc:
                if exc.status is None or not (exc.status in _FALLBACK_STATUSES or exc.status >= 500):
                    raise
                last = exc
                continue
            self._mode = index
            return Reply(reply[0], MODES[index], reply[1])
        raise LLMServerError(f"{self.endpoint.base_url} answered an error to every response format; last: {last}",
                             last.status if last else None)

    def _ask(self, messages: list[dict], response_format: dict, params: dict,
             model: str) -> tuple[str | None, bool]:
        """(text, cut): cut when the server stopped at max_tokens, leaving the JSON unfinished."""
        if self.endpoint.fold_system:
            messages = fold_system(messages)
        response = self._call(lambda: self._client.chat.completions.create(
            model=model, messages=messages, response_format=response_format, **params))
        if not response.choices:
            return None, False
        choice = response.choices[0]
        return choice.message.content, choice.finish_reason == "length"

    def complete_tools(self, messages: list[dict], tools: list[dict], params: dict, model: str) -> dict:
        """One answer that may call `tools` (the API's function calling): the assistant message, as a dict."""
        if self.endpoint.fold_system:
            messages = fold_system(messages)
        response = self._call(lambda: self._client.chat.completions.create(
            model=model, messages=messages, tools=tools, **params))
        if not response.choices:
            raise LLMError(f"{self.endpoint.base_url} answered with no choices")
        return response.choices[0].message.model_dump(exclude_none=True)

    def _call(self, request: Callable[[], T]) -> T:
        """Run one request, turning the client's exceptions into ours."""
        url = self.endpoint.base_url
        try:
            return request()
        except openai.APITimeoutError:
            raise LLMTimeout(f"{url} did not answer within {self.endpoint.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise LLMUnavailable(f"cannot reach {url}: {exc.__cause__ or exc}") from None
        except openai.APIStatusError as exc:
            raise LLMServerError(f"{url} answered HTTP {exc.status_code}: {_short(exc.message)}",
                                 exc.status_code) from None
        except openai.OpenAIError as exc:
            raise LLMError(f"{url}: {exc}") from None


# Bounds that grammar-constrained decoders unroll into deeply nested rules (llama.cpp's server died
# with SIGSEGV on the hint schema's 1000-character reasons); the caller checks every answer anyway.
_GRAMMAR_HEAVY = {"maxLength", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern"}


def light_schema(schema):
    """`schema` without the bounds a grammar would unroll."""
    if isinstance(schema, dict):
        return {k: light_schema(v) for k, v in schema.items() if k not in _GRAMMAR_HEAVY}
    if isinstance(schema, list):
        return [light_schema(v) for v in schema]
    return schema


def fold_system(messages: list[dict]) -> list[dict]:
    """The messages with the system turns joined onto the head of the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    first_user = next((m for m in rest if m["role"] == "user"), None)
    if system and first_user is not None:
        first_user["content"] = f"{system}\n\n{first_user['content']}"
    return rest


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def ask_structured(client: ChatClient, model: str, messages: list[dict], schema: dict, params: dict,
                   parse: Callable[[str | None], T]) -> Answer:
    """Ask; if `parse` rejects the answer, show the model its error once; then give up clearly."""
    text, mode, error = _attempt(client, model, messages, schema, params, parse)
    if error is None:
        return Answer(text, parse(text), mode, repaired=False)
    repair = [*messages, {"role": "assistant", "content": text or ""},
              {"role": "user", "content": f"Your answer is invalid: {error}. Reply again with only the "
                                          "corrected JSON object, fitting the schema."}]
    text2, mode, error2 = _attempt(client, model, repair, schema, params, parse)
    if error2 is None:
        return Answer(text2, parse(text2), mode, repaired=True)
    raise LLMAnswerError(f"model {model} gave no valid answer after one repair round: "
                         f"first: {error}; after repair: {error2}")


def _attempt(client: ChatClient, model: str, messages: list[dict], schema: dict, params: dict,
             parse: Callable[[str | None], T]) -> tuple[str | None, str, str | None]:
    """(text, mode, error or None) for one request."""
    reply = client.complete(messages, schema, params, model)
    if reply.cut:
        return reply.text, reply.mode, "the answer was cut off at the token limit; give fewer hints"
    try:
        parse(reply.text)
    except AnswerInvalid as exc:
        return reply.text, reply.mode, str(exc)
    return reply.text, reply.mode, None
