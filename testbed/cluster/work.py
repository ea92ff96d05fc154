"""What a cluster worker runs: prepare its host once, then one topology's group of runs in one boot.

The worker reports as it goes, so that the driver loses nothing when it dies:
`Started` (which host holds the group), `Prepared` (the host's facts, after the
same cached set-up a serial run makes: host packages, image, plugin), then one
`Finished` per run with the host's plugin record for the topology (its own
calibration, trim and k) and the LLM exchanges made since the last report.
"""

from __future__ import annotations

import io
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import host, image
from ..advisor import AnswerCache
from ..evaluation import manifest, runner
from ..evaluation.matrix import Matrix, RunKey
from ..files import locked
from ..llm_client import Endpoint
from ..process import stop_signals


@dataclass(frozen=True)
class Started:
    host: str
    node_id: str


@dataclass(frozen=True)
class Prepared:
    host: str
    record: dict[str, Any]  # facts, testbed commit, QEMU, kernel and image of this host


@dataclass(frozen=True)
class Finished:
    run: dict[str, Any]              # a results.Run, as JSON
    plugin: dict[str, Any]           # this host's plugin record for the run's topology
    llm: list[dict[str, Any]]        # manifest.LlmExchange records since the last report


def node_id() -> str:
    import ray
    return ray.get_runtime_context().get_node_id()


def host_name(node: str) -> str:
    """A run's host: the machine's name and the Ray node (several nodes may share one machine)."""
    return f"{socket.gethostname()}/{node[:8]}"


def prepare() -> image.GuestImage:
    """The host's packages and guest image, made once per host: concurrent workers wait for the first."""
    with locked(image.cache_root() / "prepare.lock"):
        host.ensure()
        return image.ensure(Console(file=io.StringIO()))


def run_group(matrix: Matrix, keys: list[RunKey], endpoint: Endpoint | None,
              answers: str | None) -> Iterator[Started | Prepared | Finished]:
    """Boot `keys[0].topology` once and measure every key in it, reporting as it goes.

    A cancel from the driver arrives as SIGINT: the run is cut, the guest shut down.
    """
    with stop_signals():
        node = node_id()
        me = host_name(node)
        yield Started(me, node)
        img = prepare()
        man = manifest.collect(matrix, img, ["testbed", "eval", "(cluster worker)"])
        yield Prepared(me, {"facts": man.host, "testbed_commit": man.testbed_commit,
                            "testbed_dirty": man.testbed_dirty, "qemu_version": man.qemu_version,
                            "kernel_version": man.kernel_version, "image_digest": man.image_digest})
        topology = keys[0].topology
        with tempfile.TemporaryDirectory(prefix="llamas-worker-") as scratch:
            settings = runner.Settings(out=Path(scratch), endpoint=endpoint,
                                       answers=AnswerCache(Path(answers)) if answers else None)
            evaluation = runner.Evaluation(matrix, settings, man, Console(file=io.StringIO()), host=me)
            sent = 0
            try:
                for run in runner.topology_runs(evaluation, img, topology, keys):
                    yield Finished(run.model_dump(mode="json"), dict(man.plugin.get(topology, {})),
                                   [x.model_dump() for x in man.llm[sent:]])
                    sent = len(man.llm)
            finally:
                evaluation.close()
