"""What one MCP session may spend: hint documents applied, guest time, tool calls.

A dry run and `undo` are free (an agent can always look before it acts and
restore what it did); every applied document is an action, whether the agent
accepts its hints or not; workload runs and DAMON sampling reserve their time
limit before they start, so a run that would overdraw the budget never starts,
and are charged what they really took.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class BudgetExceeded(RuntimeError):
    """The session's budget does not cover this call; nothing was done."""


class BudgetLeft(BaseModel):
    """What the session may still spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actions_left: int
    guest_seconds_left: float
    calls_left: int


@dataclass
class Budget:
    actions: int = 20
    guest_seconds: float = 1800.0
    calls: int = 500
    used_actions: int = 0
    used_seconds: float = 0.0
    used_calls: int = 0

    def call(self, tool: str) -> None:
        """Count one tool call; refuse it once the session's calls are spent."""
        if self.used_calls >= self.calls:
            raise BudgetExceeded(f"{tool} refused: this session's {self.calls} tool calls are spent")
        self.used_calls += 1

    def action(self) -> None:
        """Count one applied hint document; refuse it once the actions are spent."""
        if self.used_actions >= self.actions:
            raise BudgetExceeded(f"apply_hints refused: this session's action budget is spent ({self.used_actions} "
                                 f"of {self.actions} hint documents applied); dry runs and undo still work")
        self.used_actions += 1

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.guest_seconds - self.used_seconds)

    def reserve(self, seconds: float, what: str) -> None:
        """Refuse `what` if its time limit is more guest time than is left."""
        if seconds > self.seconds_left:
            raise BudgetExceeded(f"{what} refused: its time limit of {seconds:g} s is more than the "
                                 f"{self.seconds_left:.1f} s of guest time this session has left "
                                 f"(of {self.guest_seconds:g} s); nothing was started")

    def charge(self, seconds: float) -> None:
        self.used_seconds += max(0.0, seconds)

    def left(self) -> BudgetLeft:
        return BudgetLeft(actions_left=self.actions - self.used_actions,
                          guest_seconds_left=round(self.seconds_left, 3), calls_left=self.calls - self.used_calls)
