"""Strict JSON documents: bounded size, no key given twice in one object.

Every document the agent reads from outside (hint documents, placement
policies) goes through `load_strict`.  A key given twice is refused because
JSON parsers disagree on which value wins, and the host and the guest must
never read one document two ways.
"""

import json


class SchemaError(ValueError):
    """The document does not fit its schema; the message says where and why."""


def load_strict(raw, max_bytes, check=None):
    """Bytes -> parsed JSON, or SchemaError: too big, malformed, a key repeated in one object, or
    refused by `check(doc)` (the document's own schema checks, which raise SchemaError)."""
    if len(raw) > max_bytes:
        raise SchemaError(f"document is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        doc = json.loads(raw, object_pairs_hook=_object)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise SchemaError("malformed JSON: nested too deeply") from None
    repeated = _first_repeated(doc)
    if repeated:
        key, where = repeated
        raise SchemaError(f"duplicate key {key[:64]!r} in {where[:200] or 'the top-level object'}: each key may "
                          "appear once (JSON parsers disagree on which value wins)")
    if check:
        check(doc)
    return doc


def each(items, name, check):
    """check(item) for every item of a list; a SchemaError is prefixed with where it stands, e.g. 'rules[2]: '."""
    for i, item in enumerate(items):
        try:
            check(item)
        except SchemaError as exc:
            raise SchemaError(f"{name}[{i}]: {exc}") from None


class _Repeated(dict):
    """A JSON object that names `key` twice, kept until the walk below can say where it stands."""

    def __init__(self, pairs, key):
        super().__init__(pairs)
        self.key = key


def _object(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            return _Repeated(pairs, key)
        seen.add(key)
    return dict(pairs)


def _first_repeated(doc):
    """(key, path such as 'hints[0]') of the first object, in document order, with a repeated key; or None."""
    todo = [("", doc)]
    while todo:  # without recursion: the sender chooses the nesting
        where, value = todo.pop()
        if isinstance(value, _Repeated):
            return value.key, where
        if isinstance(value, dict):
            todo.extend((f"{where}.{k}" if where else k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None
