"""``--backend ray``: the deployments of a scenario simulated as Ray tasks.

Pools are independent (each has its own demand, replicas and random streams seeded by the
scenario seed and the deployment's index), so sharding by pool gives results identical to the
local backend. Ray is an optional extra (``pip install -e '.[ray]'``); without it this module
raises a ConfigError that says how to install it. ``address`` connects to a running cluster;
None starts (or reuses) a local Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from capacitor.errors import ConfigError


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs the ray extra: pip install -e '.[ray]'") from None
    return ray


def run_pools(scenario, *, profile_path: str | None = None, base_dir: Path | None = None,
              progress: Callable[[str, int, int], None] | None = None,
              address: str | None = None) -> list:
    """Every deployment's :class:`~capacitor.simulate.PoolRun`, in scenario order."""
    ray = _ray()
    from capacitor.simulate import simulate_deployment

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)

    @ray.remote
    def one(d_index: int):
        return simulate_deployment(scenario, d_index, profile_path=profile_path,
                                   base_dir=base_dir)

    n = len(scenario.deployments)
    refs = [one.remote(d) for d in range(n)]
    pools = [None] * n
    pending = {ref: d for d, ref in enumerate(refs)}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        d = pending.pop(ready[0])
        pools[d] = ray.get(ready[0])
        done += 1
        if progress is not None:
            progress(scenario.deployments[d].name, done, n)
    return pools


__all__ = ["run_pools"]
