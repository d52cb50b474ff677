"""Where the pools of a scenario run: ``local`` (this process, ``workers`` pools at a time on
threads) or ``--backend ray`` (Ray tasks). Either hands each pool's output to the driver in
task order.

Pools are independent (each has its own demand, replicas and random streams seeded by the
scenario seed, the deployment's index and the shard's), so sharding by pool gives results
identical to the local backend. Ray is an optional extra (``pip install -e '.[ray]'``);
without it this module raises a ConfigError that says how to install it. ``address``
connects to a running cluster; None starts (or reuses) a local Ray.
"""

from __future__ import annotations

from collections.abc import Callable

from capacitor.errors import ConfigError
from capacitor.parallel import map_ordered
from capacitor.simulate.shards import run_shard


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs the ray extra: pip install -e '.[ray]'") from None
    return ray


def run_local(scenario, tasks: list[tuple[int, int]], kwargs: dict, take: Callable,
              progress: Callable[[str, int, int], None] | None, workers: int) -> None:
    """Run the pools in this process, ``workers`` at a time on threads, handing each output
    to ``take`` in task order, as the Ray backend does: the results do not depend on
    ``workers``, and at most ``workers + 1`` pools are held at once
    (:func:`capacitor.parallel.map_ordered`)."""
    outputs = map_ordered(lambda task: run_shard(scenario, *task, **kwargs), tasks, workers)
    for i, out in enumerate(outputs):
        take(out)
        if progress is not None:
            progress(scenario.deployments[tasks[i][0]].name, i + 1, len(tasks))


def run_ray(scenario, tasks: list[tuple[int, int]], kwargs: dict,
               take: Callable, *, progress: Callable[[str, int, int], None] | None = None,
               address: str | None = None, max_in_flight: int | None = None) -> None:
    """Run :func:`~capacitor.simulate.shards.run_shard` for every ``(deployment, shard)`` of
    ``tasks`` as Ray tasks and hand each output to ``take`` in task order (so digests merge
    and requests are written exactly as the local backend does). At most ``max_in_flight``
    tasks (default: twice the cluster's CPUs) are pending, which bounds the driver's memory."""
    ray = _ray()

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    @ray.remote
    def one(d_index: int, shard: int):
        return run_shard(scenario, d_index, shard, **kwargs)

    pending: dict = {}
    ready_out: dict[int, object] = {}
    submitted = taken = 0
    while taken < len(tasks):
        while submitted < len(tasks) and len(pending) + len(ready_out) < limit:
            pending[one.remote(*tasks[submitted])] = submitted
            submitted += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        ready_out[pending.pop(done[0])] = ray.get(done[0])
        while taken in ready_out:
            take(ready_out.pop(taken))
            taken += 1
            if progress is not None:
                d = tasks[taken - 1][0]
                progress(scenario.deployments[d].name, taken, len(tasks))


__all__ = ["run_local", "run_ray"]
