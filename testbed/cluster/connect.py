"""Ray for an evaluation: a local instance with N workers, or an existing cluster by address."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

# Ray replaces 127.0.0.1 by the host's outside address (so that other hosts could join);
# any other loopback address it keeps, so a local instance talks over lo only.
LOCAL_NODE_IP = "127.0.0.2"
OBJECT_STORE_BYTES = 128 << 20  # runs are small records: Ray's default would take 30 % of the RAM
ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report to the network


class ClusterError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached or offers no CPU."""


@dataclass(frozen=True)
class Cluster:
    """A connected Ray: where, and how many runs it can hold at once (one CPU each)."""

    address: str     # "local" for an instance this command started
    workers: int

    @property
    def local(self) -> bool:
        return self.address == "local"


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("running on workers needs Ray: pip install 'llamas-testbed[cluster]'") from None
    return ray


def start(workers: int | None = None, address: str | None = None) -> Cluster:
    """Start a local Ray instance with `workers` CPUs, or connect to the cluster at `address`."""
    ray = _ray()
    os.environ.update(ENV)  # before Ray starts, so its processes inherit it
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=workers or 1, include_dashboard=False,
                     _node_ip_address=LOCAL_NODE_IP, object_store_memory=OBJECT_STORE_BYTES, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ClusterError(f"Ray at {address or 'a local instance'}: {exc}") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        ray.shutdown()
        raise ClusterError(f"the Ray cluster at {address} offers no CPU for runs")
    return Cluster(address=address or "local", workers=cpus)


def stop(cluster: Cluster) -> None:
    """Disconnect; a local instance stops with its workers (their guests die with them: PDEATHSIG)."""
    _ray().shutdown()


def alive_nodes() -> list[str]:
    """Node ids of the cluster's live nodes that offer CPUs."""
    return [n["NodeID"] for n in _ray().nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
