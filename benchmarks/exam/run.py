"""The hint exam (or, with --policy, the policy exam): ask an advisor about every scenario, score its
decisions, print the table.

    python benchmarks/exam/run.py                      # the local default (llama.cpp, gemma3 270M)
    python benchmarks/exam/run.py --endpoint URL --model NAME
    python benchmarks/exam/run.py --policy             # standing policies (benchmarks/exam/policies/)
    nox -s exam -- --endpoint http://127.0.0.1:8080/v1

Answers are cached (see testbed/advisor.py): a second run replays them
without the model unless --refresh.  Next to the advisor's score the table
shows what an empty answer scores (the "do nothing" floor: decisions that
forbid a move hold trivially) and what the reference answers score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from testbed import exam, policy_exam
from testbed.advise_command import add_system_in_user
from testbed.advisor import Advisor
from testbed.llm_client import DEFAULT_TIMEOUT_S, Endpoint, LLMError, LLMUnavailable
from testbed.llm_server import LocalServerError


def run_one(advisor: Advisor, scenario: exam.Scenario) -> dict:
    """One scenario's row: the score and what the advisor did."""
    row = {"scenario": scenario.name, "machine": scenario.machine, "total": len(scenario.decisions),
           "floor": exam.score(scenario, []).passed}
    try:
        advice = advisor.advise(scenario.topology, scenario.state, scenario.notes)
    except LLMUnavailable:
        raise
    except LLMError as exc:
        return {**row, "passed": 0, "error": str(exc), "missed": [d.describe() for d in scenario.decisions]}
    result = exam.score(scenario, advice.hints)
    return {**row, "passed": result.passed, "missed": result.failed, "hints": [h.dump() for h in advice.hints],
            "dropped": [d.to_json() for d in advice.dropped], "repaired": advice.repaired,
            "cached": advice.cached, "seconds": round(advice.seconds, 2), "answer_digest": advice.answer_digest,
            "prompt_digest": advice.prompt_digest, "answer": f"{len(advice.hints)} hints, {len(advice.dropped)} dropped"}


def run_one_policy(advisor: Advisor, scenario: policy_exam.Scenario) -> dict:
    """One policy scenario's row: the score and the policy the advisor wrote."""
    row = {"scenario": scenario.name, "machine": scenario.machine, "total": len(scenario.decisions),
           "floor": policy_exam.score(scenario, None).passed}
    try:
        advice = advisor.advise_policy(scenario.topology, scenario.notes)
    except LLMUnavailable:
        raise
    except LLMError as exc:
        return {**row, "passed": 0, "error": str(exc), "missed": [d.describe() for d in scenario.decisions]}
    result = policy_exam.score(scenario, advice.policy)
    return {**row, "passed": result.passed, "missed": result.failed,
            "policy": advice.policy.model_dump(by_alias=True, exclude_none=True), "repaired": advice.repaired,
            "cached": advice.cached, "seconds": round(advice.seconds, 2), "answer_digest": advice.answer_digest,
            "prompt_digest": advice.prompt_digest, "answer": f"{len(advice.policy.rules)} rules"}


def scenario_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for name, justify in [("scenario", "left"), ("machine", "left"), ("score", "right"), ("doing nothing", "right"),
                          ("answer", "right"), ("repaired", "center"), ("s", "right"), ("missed", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["scenario"], r["machine"], f"0/{r['total']}", f"{r['floor']}/{r['total']}", "-",
                          "-", "-", f"[red]error:[/red] {r['error'][:120]}")
            continue
        table.add_row(r["scenario"], r["machine"], f"{r['passed']}/{r['total']}", f"{r['floor']}/{r['total']}",
                      r["answer"], "yes" if r["repaired"] else "",
                      "cached" if r["cached"] else f"{r['seconds']:.1f}", "; ".join(r["missed"]))
    return table


def summary_table(rows: list[dict], reference: list[exam.Score], label: str, what: str) -> Table:
    total = sum(r["total"] for r in rows)

    def pct(n: int) -> str:
        return f"{n}/{total} ({100 * n / total:.0f}%)"

    table = Table(title=f"{what}: decisions made, over all scenarios")
    table.add_column("advisor")
    table.add_column("score", justify="right")
    table.add_column("scenarios fully right", justify="right")
    table.add_row(label, pct(sum(r["passed"] for r in rows)),
                  f"{sum(r['passed'] == r['total'] for r in rows)}/{len(rows)}")
    table.add_row("doing nothing (floor)", pct(sum(r["floor"] for r in rows)),
                  f"{sum(r['floor'] == r['total'] for r in rows)}/{len(rows)}")
    table.add_row("reference answers", pct(sum(r.passed for r in reference)),
                  f"{sum(r.passed == r.total for r in reference)}/{len(reference)}")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, else local)")
    p.add_argument("--model", help="model name (default: $LLAMAS_MODEL, else the server's first)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    add_system_in_user(p)
    p.add_argument("--refresh", action="store_true", help="ask the model even where an answer is cached")
    p.add_argument("--policy", action="store_true", help="the policy exam: a standing placement policy per "
                   "machine (benchmarks/exam/policies/) instead of hints for a state")
    p.add_argument("--only", nargs="*", help="scenario names (default: all)")
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    args = p.parse_args(argv)
    console = Console()
    kind = policy_exam if args.policy else exam
    ask = run_one_policy if args.policy else run_one
    what = "policy exam" if args.policy else "hint exam"
    scenarios = kind.load_all(only=args.only)
    endpoint = Endpoint.resolve(args.endpoint, args.model, None, args.timeout, args.system_in_user)
    rows = []
    try:
        with Advisor(endpoint, refresh=args.refresh) as advisor:
            label = f"{advisor.model()} @ {endpoint.base_url if endpoint else 'local llama.cpp'}"
            with console.status("asking") as status:
                for s in scenarios:
                    status.update(f"{s.name} ({len(rows) + 1}/{len(scenarios)})")
                    rows.append(ask(advisor, s))
    except (LLMUnavailable, LocalServerError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(scenario_table(rows, f"{what}: {label}"))
    console.print(summary_table(rows, [kind.score(s, s.reference) for s in scenarios], label, what))
    if args.json:
        args.json.write_text(json.dumps({"advisor": label, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
