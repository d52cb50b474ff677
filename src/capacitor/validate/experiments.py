"""The validate contract: an experiments CSV in, a predictions CSV out (DESIGN.md, "validate").

Each row of the experiments file is one deployment driven by one workload: one replica of
``tp × pp`` GPUs; or, on an ``offline`` row whose ``num_gpus`` is a multiple of ``tp × pp``,
``num_gpus / (tp × pp)`` data-parallel replicas of it behind a round-robin router; or a
disaggregated deployment, when any of ``prefill_workers, prefill_tp, prefill_ep,
prefill_dp_attention, decode_workers, decode_tp, decode_ep, decode_dp_attention`` is filled
(``prefill_workers`` replicas of ``prefill_tp`` GPUs compute prompts, ``decode_workers``
of ``decode_tp`` GPUs decode; ``num_gpus`` must equal both pools' GPUs, ``tp`` / ``pp`` /
``ep`` / ``dp_attention`` stay blank; the KV moves over NVLink when every GPU is in one
NVLink domain, else over the scale-out NIC; see
:mod:`capacitor.engine.disaggregated`). Throughput is always the deployment's total.
:func:`run_validate` simulates every row and writes one predictions row per experiment:
``id, completed``, the TTFT / ITL / TPOT / E2E mean, median, p90 and p99 in milliseconds,
``request_throughput_rps``, ``output_tokens_per_s`` and ``error``.

A file that cannot be read or lacks a required column raises
:class:`~capacitor.errors.ValidationDataError` before anything runs (CLI exit 2). A problem
with one row (a value it needs is missing or malformed, an unknown model or GPU, a model that
does not fit, ``num_requests`` disagreeing with ``stages`` ...) fills that row's ``error``
with one line naming the column and value, and the other rows still run (CLI exit 1).

``speculative`` = mtp runs MTP speculative decoding (:mod:`capacitor.perf.speculative`) with
``num_speculative_tokens`` drafts per step (blank: 2 with sglang, else 3, or 1 with
``dp_attention``) and an
optional ``mtp_acceptance_rate`` (blank: 0.69, :mod:`capacitor.perf.speculative`).
``ep_num_redundant_experts`` (``prefill_`` / ``decode_`` on a disaggregated row's pools)
adds physical experts per MoE layer (blank: the fewest that divide over ``ep``,
:func:`capacitor.perf.memory.redundant_experts`).

Blank cells: ``tp`` / ``pp`` 1, ``engine`` vllm, ``speculative`` none, ``block_size`` 16,
``seed`` 42, ``arrival`` poisson, ``enable_multi_turn_chat`` false; closed loop
``min_length_fraction`` 1.0, ``num_requests`` 10 × concurrency, ``num_warmup_requests`` 0;
offline ``num_requests`` per :func:`capacitor.workload.offline.default_num_requests`; any
other engine setting is None, i.e. the engine's own default
(:func:`capacitor.perf.profile.engine_defaults`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capacitor.engine import simulate
from capacitor.engine.disaggregated import (
    disagg_max_model_len,
    simulate_disaggregated,
)
from capacitor.engine.simulator import simulate_pool
from capacitor.errors import (
    CapacitorError,
)
from capacitor.parallel import default_workers, map_ordered
from capacitor.perf.memory import kv_transfer_s
from capacitor.perf.profile import load_profile
from capacitor.validate.metrics import (
    PREDICTION_COLUMNS,
    absolute_percentage_errors,
    read_csv,
    read_measured,
    request_metrics,
    write_predictions,
)
from capacitor.validate.replicas import (
    DisaggPlan,
    _data_parallel_replicas,
    build_disaggregated,
    build_replica_for_row,
    is_disaggregated,
)
from capacitor.validate.rows import (
    COUNT,
    COUNT0,
    REQUIRED_COLUMNS,
    Row,
    RowError,
    at_least_one,
    boolean,
    fraction,
    integer,
    one_of,
)
from capacitor.workload import closed_loop, offline, shared_prefix
from capacitor.workload.stages import arrival_times, parse_stages, stage_counts

WORKLOADS = ("shared_prefix", "closed_loop", "offline")
ARRIVALS = ("poisson", "constant")
DEFAULT_SEED = 42

#: ``progress(done, total, row_id, error)`` is called after each row (error None on success).
ProgressCallback = Callable[[int, int, str, "str | None"], None]


# The public shared-prefix validation runs (inference-perf against vLLM, the
# inference-sim/tektonc-data-collection campaign) served with --max-model-len 4096; with
# carried multi-turn context (``carry_context``) that limit decides how many rounds each user
# completes (later rounds are refused with HTTP 400), so a blank ``max_model_len`` on a
# shared_prefix row means 4096
# (or the model's own limit / the KV capacity if smaller). A ``max_model_len`` column
# overrides it; other workloads default to the model's limit capped by the KV capacity.
SHARED_PREFIX_MAX_MODEL_LEN = 4096

@dataclass(slots=True)
class RowPlan:
    """What one row simulates: the request batch, the replica, and which requests count."""

    batch: Any
    config: Any
    coeffs: np.ndarray
    measured_mask: np.ndarray
    num_replicas: int = 1  # offline data-parallel replicas
    disagg: DisaggPlan | None = None


def _shared_prefix(row: Row, seed: int, max_model_len: int) -> Any:

    text = row.get("stages", required=True)
    try:
        stages = parse_stages(text)
        counts = [int(c) for c in stage_counts(stages)]
    except (CapacitorError, ValueError) as exc:
        raise RowError("stages", text, str(exc)) from None
    num_requests = row.get("num_requests", COUNT)
    if num_requests is not None and num_requests != sum(counts):
        reason = f"stages {text!r} send {sum(counts)} requests"
        raise RowError("num_requests", num_requests, reason)
    arrival = row.get("arrival", one_of(ARRIVALS), "poisson")
    shape = {c: row.get(c, COUNT, required=True) for c in _SHARED_PREFIX_COUNTS}
    shape["system_prompt_len"] = row.get("system_prompt_len", COUNT0, required=True)
    multi_turn = row.get("enable_multi_turn_chat", boolean, False)
    # Optional column: grow each user's context by every answered round (inference-perf's
    # current source); blank/false sends every round as system prompt + question, as the
    # measured inference-perf runs did (evidence in capacitor.workload.shared_prefix).
    carry_context = row.get("carry_context", boolean, False)
    # Optional columns, as the scenario's shared_prefix keys of the same names (one
    # generator, one meaning): conversations of a geometric number of rounds, and what a
    # user does when the context is full. Both need carry_context.
    rounds = row.get("mean_rounds_per_session", at_least_one)
    context_full = row.get("context_full", one_of(shared_prefix.CONTEXT_FULL), "refuse")
    for col, value, default in (("mean_rounds_per_session", rounds, None),
                                ("context_full", context_full, "refuse")):
        if value != default and not (multi_turn and carry_context):
            raise RowError(col, row.text(col), "needs enable_multi_turn_chat and "
                           "carry_context true (a context that is not carried never grows)")
    arrival_s = arrival_times(stages, arrival, np.random.default_rng(seed))
    return shared_prefix.generate(
        **shape,
        enable_multi_turn_chat=multi_turn,
        arrival_s=arrival_s,
        seed=seed,
        max_model_len=max_model_len,
        stage_counts=counts,
        carry_context=carry_context,
        mean_rounds_per_session=rounds,
        context_full=context_full,
    )


_SHARED_PREFIX_COUNTS = ("question_len", "output_len", "num_groups", "users_per_group")


def build_workload(row: Row, max_model_len: int) -> Any:
    """The row's request batch (shared_prefix, closed_loop or offline)."""
    seed = row.get("seed", integer(0, 2**63 - 1), DEFAULT_SEED)
    if row.workload == "shared_prefix":
        return _shared_prefix(row, seed, max_model_len)
    isl, osl = row.get("isl", COUNT, required=True), row.get("osl", COUNT, required=True)
    if row.workload == "closed_loop":

        concurrency = row.get("concurrency", COUNT, required=True)
        num_requests = row.get("num_requests", COUNT, 10 * concurrency)
        warmup = row.get("num_warmup_requests", COUNT0, 0)
        if warmup >= num_requests:
            reason = f"leaves no measured request of num_requests={num_requests}"
            raise RowError("num_warmup_requests", warmup, reason)
        return closed_loop.generate(
            concurrency=concurrency,
            num_requests=num_requests,
            isl=isl,
            osl=osl,
            min_length_fraction=row.get("min_length_fraction", fraction, 1.0),
            num_warmup_requests=warmup,
            seed=seed,
            max_model_len=max_model_len,
        )

    num_requests = row.get("num_requests", COUNT)  # None: the generator's documented default
    return offline.generate(
        num_requests=num_requests, isl=isl, osl=osl, max_model_len=max_model_len
    )


def build_row(row: Row, profile: object) -> RowPlan:
    """Everything one row simulates. Raises RowError / CapacitorError when it cannot run."""
    row.workload = row.get("workload", one_of(WORKLOADS), required=True)
    disagg = None
    num_replicas = 1
    if is_disaggregated(row):
        disagg = build_disaggregated(row, profile)
        config, coeffs = disagg.decode[0], disagg.decode[1]
        max_model_len = disagg_max_model_len(disagg.prefill[0], disagg.decode[0])
    else:
        config, coeffs = build_replica_for_row(row, profile)
        num_replicas = _data_parallel_replicas(row, row.get("tp", COUNT, 1),
                                               row.get("pp", COUNT, 1))
        if row.workload == "shared_prefix" and not row.text("max_model_len"):
            limit = min(config.effective_max_model_len, SHARED_PREFIX_MAX_MODEL_LEN)
            config = dataclasses.replace(config, max_model_len=limit)
        max_model_len = config.effective_max_model_len
    batch = build_workload(row, max_model_len)
    mask = np.ones(len(batch), np.bool_)
    mask[: int(batch.num_warmup)] = False
    if mask.any() and batch.rejected[mask].all():  # nothing would run: say why, on the row
        need = int((batch.prompt_len + batch.output_len)[mask].min())
        kv_tokens, hw = config.num_gpu_blocks * config.block_size, row.text("hardware")
        reason = f"requests of {need} tokens exceed max_model_len={max_model_len}"
        if need > kv_tokens:
            reason = (
                f"does not fit on hardware={hw}: {need} tokens per request, KV cache {kv_tokens}"
            )
        raise RowError("model", row.text("model"), reason)
    return RowPlan(batch=batch, config=config, coeffs=coeffs, measured_mask=mask,
                   num_replicas=num_replicas, disagg=disagg)


def predict_row(row: Row, profile: object) -> dict[str, float | int]:
    """Simulate one experiment row and return its metric columns: one replica, an offline
    row's data-parallel replicas (round robin), or a disaggregated deployment."""

    plan = build_row(row, profile)
    itl_class = np.where(plan.measured_mask, 0, -1).astype(np.int32)
    if plan.disagg is not None:
        d = plan.disagg
        transfer = kv_transfer_s(d.model, d.prefill_tp, d.kv_cache_dtype,
                                 plan.batch.prompt_len, d.link_gb_s)
        result = simulate_disaggregated(plan.batch, d.prefill, d.decode, transfer,
                                        itl_class=itl_class, num_itl_classes=1)
    elif plan.num_replicas > 1:
        result = simulate_pool(plan.batch, plan.config, plan.coeffs,
                               num_replicas=plan.num_replicas, itl_class=itl_class,
                               num_itl_classes=1)
    else:
        result = simulate(plan.batch, plan.config, plan.coeffs, itl_class=itl_class,
                          num_itl_classes=1)
    return request_metrics(plan.batch, result, plan.measured_mask)


@dataclass(slots=True)
class ValidateReport:
    """Outcome of :func:`run_validate`.

    Attributes:
        predictions: one dict per experiment row, keyed by :data:`PREDICTION_COLUMNS`.
        out_path: where the predictions CSV was written.
        ape_columns: metric columns present in both predictions and the measured file.
        ape: per row id with a measurement, absolute percentage error (%) per metric.
        median_ape: per metric, the median APE over the rows that have one.
        elapsed_s: wall-clock seconds the run took (goes to no file).
    """

    predictions: list[dict[str, object]]
    out_path: Path
    ape_columns: list[str] = field(default_factory=list)
    ape: dict[str, dict[str, float]] = field(default_factory=dict)
    median_ape: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def num_errors(self) -> int:
        return sum(1 for p in self.predictions if p["error"])

    @property
    def exit_code(self) -> int:
        """0 when every row ran, 1 when some row failed."""
        return 1 if self.num_errors else 0


def _row_error(exc: Exception) -> str:
    """One line for the ``error`` column."""
    text = (
        str(exc)
        if isinstance(exc, CapacitorError)
        else f"internal error: {type(exc).__name__}: {exc}"
    )
    return " ".join(text.split())


def run_validate(
    experiments_path: str | Path,
    out_path: str | Path,
    measured_path: str | Path | None = None,
    profile_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> ValidateReport:
    """Simulate every row of ``experiments_path`` and write the predictions CSV to ``out_path``.

    Args:
        measured_path: optional measured CSV (``id`` plus metric columns) to compare with.
        profile_path: optional engine profile YAML (default: the bundled calibrated one).
        progress: called after each row as ``progress(done, total, row_id, error)``.
        workers: rows simulated at once on threads (default: one per CPU); the results
            do not depend on it.

    Raises:
        ValidationDataError: an input file cannot be read or lacks a required column.
        CapacitorError: the profile cannot be loaded.
    """

    start = time.perf_counter()
    experiments_path = Path(experiments_path)
    _, rows = read_csv(experiments_path, REQUIRED_COLUMNS, "experiments CSV")
    ape_columns, measured = read_measured(measured_path) if measured_path is not None else ([], {})
    profile = load_profile(None if profile_path is None else Path(profile_path))

    seen: set[str] = set()
    id_errors: list[RowError | None] = []
    for cells in rows:
        rid = cells.get("id", "")
        bad = not rid or rid in seen
        id_errors.append(RowError("id", rid, "missing" if not rid else
                                  "appears on an earlier row too") if bad else None)
        seen.add(rid)

    def one(index: int) -> dict[str, object]:
        cells = rows[index]
        pred: dict[str, object] = dict.fromkeys(PREDICTION_COLUMNS, "")
        pred["id"] = cells.get("id", "")
        try:
            if id_errors[index] is not None:
                raise id_errors[index]
            pred.update(predict_row(Row(cells, experiments_path.parent), profile))
        except Exception as exc:  # noqa: BLE001 - a failing row is reported on its row
            pred["error"] = _row_error(exc)
        return pred

    predictions: list[dict[str, object]] = []
    # rows run one per CPU on threads (each is a pure function of its cells), in row order
    for pred in map_ordered(one, range(len(rows)), default_workers() if workers is None
                            else workers):
        predictions.append(pred)
        if progress is not None:
            progress(len(predictions), len(rows), str(pred["id"]), str(pred["error"]) or None)

    write_predictions(Path(out_path), predictions)
    report = ValidateReport(
        predictions=predictions, out_path=Path(out_path), ape_columns=ape_columns
    )
    if measured_path is not None:
        report.ape, report.median_ape = absolute_percentage_errors(
            predictions, measured, ape_columns
        )
    report.elapsed_s = time.perf_counter() - start
    return report


__all__ = [
    "PREDICTION_COLUMNS",
    "REQUIRED_COLUMNS",
    "Row",
    "RowError",
    "ValidateReport",
    "build_row",
    "run_validate",
]
