"""`testbed eval MATRIX --out DIR [--resume]`, `testbed eval --rerun DIR/manifest.json` and
`testbed eval --compare RECORDED RERUN` (two finished evaluations' agreement, no run)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .. import image
from ..advisor import AnswerCache
from ..cluster.connect import ClusterError
from ..llm_client import DEFAULT_TIMEOUT_S, Endpoint
from . import agreement, datafile, manifest, results, resume, runner, summary
from . import matrix as _matrix

err = Console(stderr=True)


def _load(args: argparse.Namespace) -> tuple[_matrix.Matrix, Path]:
    """The matrix to run and the output folder, from a matrix file or a recorded manifest."""
    if args.rerun:
        recorded = manifest.read(args.rerun)
        out = args.out or args.rerun.parent / "rerun"
        return manifest.rerun_matrix(recorded, args.rerun), out
    if args.matrix is None:
        raise SystemExit("testbed eval: give a MATRIX (name or file) or --rerun DIR/manifest.json")
    if args.out is None:
        raise SystemExit("testbed eval: give --out DIR for the results")
    return _matrix.load(_matrix.resolve(args.matrix)), args.out


def cmd_eval(args: argparse.Namespace) -> int:
    """Run a matrix (or re-run a recorded one), print the summary table."""
    # A wide table when the output goes to a file or a pipe (nox, CI logs), not 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if args.compare:
        return _compare(*args.compare, console)
    try:
        matrix, out = _load(args)
        _ray_address(args)  # before any boot or image build
    except (datafile.DataFileError, manifest.ManifestError, ClusterError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    img = image.ensure(err)
    man = manifest.collect(matrix, img, sys.argv)
    if args.rerun:
        for line in manifest.drift(manifest.read(args.rerun), man):
            err.print(f"[yellow]warning:[/yellow] differs from the recorded run: {line}", highlight=False)
    kept: list[results.Run] = []
    if args.resume:
        try:
            kept, recorded = resume.finished(out, matrix)
        except resume.ResumeError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return 2
        for line in manifest.drift(recorded, man):
            err.print(f"[yellow]warning:[/yellow] differs from the interrupted run: {line}", highlight=False)
        resume.carry_over(recorded, man, matrix, kept)
    out.mkdir(parents=True, exist_ok=True)
    manifest.write(out, man)
    endpoint = Endpoint.resolve(args.endpoint, args.model, None, args.timeout)
    settings = runner.Settings(out=out, endpoint=endpoint, refresh=args.refresh,
                               answers=AnswerCache(args.answers) if args.answers else None)
    resumed = f" ({len(kept)} kept from the interrupted evaluation)" if args.resume else ""
    console.print(f"[bold]{matrix.name}[/bold]: {len(matrix.runs())} runs{resumed} -> {out}")
    evaluation = runner.Evaluation(matrix, settings, man, console, runs=kept)
    try:
        rows = _run(evaluation, img, args)
    except ClusterError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    console.print(summary.table(rows, title=f"{matrix.name}: {len(evaluation.runs)} runs"))
    console.print(f"wrote {out}/: results.json results.csv summary.txt summary.csv plots manifest.json")
    if args.rerun:
        _agreement(args.rerun.parent, out, evaluation.runs, console)
    failed = sum(not r.ok for r in evaluation.runs)
    if failed:
        err.print(f"[yellow]{failed} run(s) failed; their errors are in results.json[/yellow]")
    return 0


def _agreement(recorded: Path, rerun: Path, after: list[results.Run], console: Console) -> bool:
    """Set the re-run's runs (`after`, in folder `rerun`) beside the recorded evaluation's, if its results are
    still there, say where each cell's time per operation moved, and write both to `rerun`/agreement.txt.
    False when there was nothing to compare with."""
    if not (recorded / results.JSON_NAME).is_file():
        err.print(f"[yellow]warning:[/yellow] {recorded} holds no {results.JSON_NAME}: nothing to compare the "
                  "re-run with", highlight=False)
        return False
    before = results.read(recorded)
    cells = agreement.compare(summary.summarize(before), summary.summarize(after))
    splits = agreement.moved(before, after)
    shown = (agreement.table(cells, title=f"re-run against {recorded}"), agreement.verdict(cells),
             agreement.moved_table(splits), agreement.moved_verdict(cells, splits))
    for part in shown:
        console.print(part, highlight=False)
    (rerun / agreement.TXT_NAME).write_text(summary.plain_text(*shown))
    console.print(f"wrote {rerun / agreement.TXT_NAME}")
    return True


def _compare(recorded: Path, rerun: Path, console: Console) -> int:
    """`--compare`: the agreement of two finished evaluations of one matrix, without running anything."""
    if not (rerun / results.JSON_NAME).is_file():
        err.print(f"[red]error:[/red] {rerun} holds no {results.JSON_NAME}", highlight=False)
        return 2
    return 0 if _agreement(recorded, rerun, results.read(rerun), console) else 2


def _run(evaluation: runner.Evaluation, img: image.GuestImage, args: argparse.Namespace) -> list[summary.Row]:
    """Serially here, or on Ray workers (--workers N locally, --ray ADDRESS on a cluster)."""
    if not args.workers and args.ray is None:
        return runner.run_matrix(evaluation, img)
    from ..cluster import connect, driver
    cluster = connect.start(args.workers, _ray_address(args))
    try:
        evaluation.console.print(f"on Ray ({cluster.address}): {cluster.workers} worker(s)")
        return driver.run_matrix(evaluation, cluster)
    finally:
        connect.stop(cluster)


def _ray_address(args: argparse.Namespace) -> str | None:
    """The cluster --ray names (bare --ray: $RAY_ADDRESS); None for a local instance or a serial run."""
    if args.ray != "env":
        return args.ray
    if not os.environ.get("RAY_ADDRESS"):
        raise ClusterError("--ray without an ADDRESS needs RAY_ADDRESS set")
    return os.environ["RAY_ADDRESS"]


def _workers(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers {text}: give 1 or more")
    return value


def add_parser(sub) -> None:
    """Register `eval` on the `testbed` command's subparsers."""
    e = sub.add_parser("eval", help="run an evaluation matrix: topologies x workloads x policies x repeats")
    e.add_argument("matrix", nargs="?", help=f"matrix name or file ({', '.join(_matrix.available())})")
    e.add_argument("--out", type=Path, help="folder for results, summary, plots and manifest")
    e.add_argument("--rerun", type=Path, metavar="MANIFEST", help="repeat a recorded evaluation "
                   "(its matrix text; cached LLM answers are replayed where the prompt matches)")
    e.add_argument("--compare", nargs=2, type=Path, metavar=("RECORDED", "RERUN"), help="run nothing: set "
                   "two finished evaluations of one matrix side by side (agreement.txt in RERUN)")
    e.add_argument("--resume", action="store_true", help="go on with an interrupted evaluation in --out: "
                   "keep its finished runs (same matrix), run the missing and failed ones")
    e.add_argument("--workers", type=_workers, metavar="N", help="run on a local Ray instance with N workers "
                   "(one run each at a time; needs the cluster extra)")
    e.add_argument("--ray", nargs="?", const="env", metavar="ADDRESS", help="run on the Ray cluster at ADDRESS "
                   "(default: $RAY_ADDRESS); every host needs the testbed installed")
    e.add_argument("--endpoint", help="OpenAI-compatible base URL for the llm policy "
                                      "(default: $OPENAI_BASE_URL, else a local llama.cpp server)")
    e.add_argument("--model", help="model name (default: $LLAMAS_MODEL, else the server's first)")
    e.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per LLM request")
    e.add_argument("--refresh", action="store_true", help="ask the model even when an answer is cached")
    e.add_argument("--answers", type=Path, help="answer cache folder (default: the testbed's cache)")
    e.set_defaults(func=cmd_eval)
