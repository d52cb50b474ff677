"""A run directory: ``scenario.yaml`` (resolved), ``summary.json``, ``requests.parquet`` (one
row per simulated request), ``timeline.parquet`` (per minute and site) and, when a workload is
made of workflows, ``workflows.parquet`` (one row per workflow,
:mod:`capacitor.simulate.workflows`).

Per-request records are written pool by pool (:class:`RequestsWriter`, a ``requests_sink``
for :func:`capacitor.simulate.run_scenario`), so a run of hundreds of millions of requests
never holds them all in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capacitor.engine.status import CAUSE_NUMBER, REFUSAL_CAUSES, STATUS_NAMES
from capacitor.scenario import resolve_replicas
from capacitor.simulate.deployment import shard_sizes
from capacitor.simulate.summary import timeline
from capacitor.simulate.workflows import has_workflows, request_workflow_ids, workflows_table

REQUEST_COLUMNS = ("tenant", "tier", "deployment", "replica", "arrival_s", "status", "ttft_ms",
                   "e2e_ms", "input_tokens", "output_tokens", "prefix_hit_tokens", "counted",
                   "refusal")
#: ``refusal`` of a request the client got an answer for (or that was still running).
NOT_REFUSED = "none"


def _dictionary(indices: np.ndarray, names: list[str]):
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(indices.astype(np.int32), pa.array(names or [""]))


#: status code -> index of its refusal cause in ``[NOT_REFUSED, *REFUSAL_CAUSES]``
_CAUSE_INDEX = np.asarray(CAUSE_NUMBER, np.int32)


def pool_requests_table(pool, d_index: int, scenario):
    """One row per request of ``pool`` (a :class:`~capacitor.simulate.PoolRun`): tenant, tier,
    deployment, replica (its index in the deployment), send time, status, TTFT / E2E (ms),
    tokens, prefix-cache hits, whether it is counted (sent after the warm-up), and why it was
    refused (``refusal``: throttled, shed, invalid or failed, see
    :data:`~capacitor.engine.status.REFUSAL_CAUSES`; ``none`` when it was not). When the
    scenario has workflow workloads, also ``workflow`` (its id, as in ``workflows.parquet``;
    -1 none) and ``workflow_step`` (its place in it); a call never sent because an earlier
    one failed has status ``pending`` and no times."""
    import pyarrow as pa

    tenants = [t.name for t in scenario.tenants]
    tiers = np.array([t.tier for t in scenario.tenants] or [0], np.int16)
    res = pool.result
    n = len(pool.status)
    replica = np.where(res.replica >= 0, res.replica + pool.replica_offset, res.replica)
    workflow_cols = {}
    if has_workflows(scenario):  # every pool's table has the columns (one file schema)
        step = pool.demand.step
        workflow_cols = {"workflow": request_workflow_ids(pool),
                         "workflow_step": step if step.shape[0] else np.full(n, -1, np.int32)}
    return pa.table({
        "tenant": _dictionary(pool.demand.tenant, tenants),
        "tier": tiers[pool.demand.tenant],
        "deployment": _dictionary(np.full(n, d_index), [d.name for d in scenario.deployments]),
        "replica": replica.astype(np.int32),
        "arrival_s": res.send_s,
        "status": _dictionary(pool.status, list(STATUS_NAMES.values())),
        "ttft_ms": ((res.first_token_s - res.send_s) * 1e3).astype(np.float32),
        "e2e_ms": ((res.finish_s - res.send_s) * 1e3).astype(np.float32),
        "input_tokens": pool.demand.batch.prompt_len,
        "output_tokens": pool.demand.batch.output_len,
        "prefix_hit_tokens": res.num_cached_tokens,
        "counted": pool.measured,
        "refusal": _dictionary(_CAUSE_INDEX[pool.status], [NOT_REFUSED, *REFUSAL_CAUSES]),
        **workflow_cols,
    })


def _empty_table():
    """The request columns with no rows (a run that simulated nothing)."""
    import pyarrow as pa

    return pa.table({k: pa.array([], pa.int32()) for k in REQUEST_COLUMNS})


def _scale_metadata(scenario) -> dict[bytes, bytes]:

    total = resolve_replicas(scenario)
    scale = {}
    for d, dep in enumerate(scenario.deployments):
        simulated = sum(shard_sizes(scenario, d))
        scale[dep.name] = total[dep.name] / simulated
    return {b"scale_by_deployment": str(scale).encode()}


class RequestsWriter:
    """Streams pool tables into ``requests.parquet``; call with each table, then ``close``.
    The file's metadata holds each deployment's scale (replicas / simulated replicas)."""

    def __init__(self, path: Path, scenario) -> None:
        self.path = Path(path)
        self.scenario = scenario
        self._writer = None
        self.rows = 0

    def __call__(self, table) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            schema = table.schema.with_metadata(_scale_metadata(self.scenario))
            self._writer = pq.ParquetWriter(self.path, schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file (an empty table with the columns when nothing was written)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            pq.write_table(_empty_table().replace_schema_metadata(
                _scale_metadata(self.scenario)), self.path)
        else:
            self._writer.close()
            self._writer = None


def requests_table(run):
    """The requests of a run whose pools were kept (``keep_pools=True``), as one table."""
    import pyarrow as pa

    index = {d.name: i for i, d in enumerate(run.scenario.deployments)}
    parts = [pool_requests_table(p, index[p.name], run.scenario) for p in run.pools]
    if not parts:
        return _empty_table()
    return pa.concat_tables(parts).replace_schema_metadata(_scale_metadata(run.scenario))


def write_run_dir(run, out_dir: Path, resolved_yaml: str, *,
                  requests_written: bool = False) -> None:
    """``scenario.yaml``, ``summary.json``, ``timeline.parquet`` and (unless
    ``requests_written``: streamed there during the run) ``requests.parquet`` in ``out_dir``
    (created)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scenario.yaml").write_text(resolved_yaml, encoding="utf-8")
    (out_dir / "summary.json").write_text(run.summary.to_json(), encoding="utf-8")
    if not requests_written:
        pq.write_table(requests_table(run), out_dir / "requests.parquet")
    if has_workflows(run.scenario):
        pq.write_table(workflows_table(run.digests, run.scenario), out_dir / "workflows.parquet")
    pq.write_table(pa.table(timeline(run)), out_dir / "timeline.parquet")


__all__ = ["REQUEST_COLUMNS", "RequestsWriter", "pool_requests_table", "requests_table",
           "write_run_dir"]
