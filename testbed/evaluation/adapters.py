"""Output adapters: a workload's printed output -> its figures (name -> number).

A workload file names its adapter; a new output format is one small
function registered here, never harness code.
"""

from __future__ import annotations

from collections.abc import Callable

Adapter = Callable[[str], dict[str, float]]


class AdapterError(ValueError):
    """The output does not hold the figures the adapter reads."""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def keyvalue(output: str) -> dict[str, float]:
    """The last line made of `key=value` pairs; the numeric values are the figures."""
    for line in reversed(output.strip().splitlines()):
        pairs = [token.split("=", 1) for token in line.split()]
        if pairs and all(len(p) == 2 and p[0] for p in pairs):
            figures = {k: v for k, v in ((k, _number(v)) for k, v in pairs) if v is not None}
            if figures:
                return figures
    raise AdapterError(f"no line of key=value figures in the output: {output[-300:]!r}")


ADAPTERS: dict[str, Adapter] = {"keyvalue": keyvalue}
