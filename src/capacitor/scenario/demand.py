"""The scenario models of demand: arrival processes, token-length models and workloads."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from capacitor.errors import ConfigError
from capacitor.scenario.base import (
    Z99,
    Month,
    Name,
    Strict,
)
from capacitor.workload.stages import parse_stages

# ---- workloads: arrivals ---------------------------------------------------------------------


class _ArrivalBase(Strict):
    monthly_growth_pct: float = Field(
        default=0.0, gt=-100, description="Compound demand growth per month, %; applied "
        "from base_month to simulation.window.month."
    )
    base_month: Month | None = Field(
        default=None, description="Month the rates describe ('YYYY-MM'); None = the window "
        "month (no growth applied in the window)."
    )


class PoissonArrival(_ArrivalBase):
    """Poisson arrivals at a constant rate."""

    kind: Literal["poisson"] = Field(description="Arrival process kind.")
    rate_rps: float = Field(gt=0, description="Mean arrival rate, requests/s.")


class ConstantArrival(_ArrivalBase):
    """Evenly spaced arrivals."""

    kind: Literal["constant"] = Field(description="Arrival process kind.")
    rate_rps: float = Field(gt=0, description="Arrival rate, requests/s.")


class StagesArrival(_ArrivalBase):
    """Load stages from the window start: each sends round(RATE x SECONDS) requests."""

    kind: Literal["stages"] = Field(description="Arrival process kind.")
    stages: str = Field(
        description="'RATE@SECONDS;RATE@SECONDS' (requests/s for that many seconds, back to "
        "back from the window start; stages past the window end are cut)."
    )
    process: Literal["poisson", "constant"] = Field(
        default="poisson", description="Spacing inside a stage: poisson (uniformly "
        "scattered) or constant (evenly spaced)."
    )

    @field_validator("stages")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            parse_stages(value)
        except ConfigError as err:
            raise ValueError(str(err).removeprefix("stages: ")) from None
        return value


class DiurnalArrival(_ArrivalBase):
    """Poisson arrivals whose rate follows a daily cosine.

    rate(h) = mean_rate_rps x (1 + (peak_to_mean - 1) x cos(2 pi (h - peak_hour - 0.5) / 24))
    for h the UTC hour of day (fractional): the peak falls in the middle of ``peak_hour``.
    """

    kind: Literal["diurnal"] = Field(description="Arrival process kind.")
    mean_rate_rps: float = Field(gt=0, description="Daily mean arrival rate, requests/s.")
    peak_to_mean: float = Field(
        ge=1.0, le=2.0, description="Peak rate / daily mean (1-2; 2 puts the trough at 0)."
    )
    peak_hour: int = Field(
        ge=0, le=23, description="UTC hour of day whose middle has the peak rate."
    )

    def rate_at(self, hour_of_day: float) -> float:
        """Rate in requests/s at a fractional UTC hour of day (no growth)."""
        phase = 2.0 * math.pi * (hour_of_day - self.peak_hour - 0.5) / 24.0
        return self.mean_rate_rps * (1.0 + (self.peak_to_mean - 1.0) * math.cos(phase))


class BurstyArrival(_ArrivalBase):
    """Two-state Markov-modulated Poisson process (MMPP): calm and burst periods."""

    kind: Literal["bursty"] = Field(description="Arrival process kind.")
    rate_rps: float = Field(ge=0, description="Arrival rate between bursts, requests/s.")
    burst_rate_rps: float = Field(gt=0, description="Arrival rate during a burst, requests/s.")
    mean_burst_s: float = Field(gt=0, description="Mean burst length, seconds (exponential).")
    mean_gap_s: float = Field(gt=0, description="Mean time between bursts, seconds "
                              "(exponential).")

    @model_validator(mode="after")
    def _burst_above_base(self) -> BurstyArrival:
        if self.burst_rate_rps < self.rate_rps:
            raise ValueError(
                f"burst_rate_rps = {self.burst_rate_rps} is below rate_rps = {self.rate_rps}; "
                "a burst must be at least the calm rate"
            )
        return self

    @property
    def mean_rate_rps(self) -> float:
        """Long-run mean rate, requests/s."""
        total = self.mean_gap_s + self.mean_burst_s
        return (self.rate_rps * self.mean_gap_s + self.burst_rate_rps * self.mean_burst_s) / total


Arrival = Annotated[
    PoissonArrival | ConstantArrival | StagesArrival | DiurnalArrival | BurstyArrival,
    Field(discriminator="kind"),
]


# ---- workloads: lengths ----------------------------------------------------------------------


class LognormalTokens(Strict):
    """Token counts drawn from a lognormal with the given mean and 99th percentile."""

    kind: Literal["lognormal"] = Field(description="Token distribution kind.")
    mean_tokens: float = Field(gt=0, description="Mean, tokens.")
    p99_tokens: float = Field(gt=0, description="99th percentile, tokens.")
    min_tokens: int = Field(default=1, ge=1, description="Draws below are raised to this.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Draws above are cut to this; None = no cap."
    )

    @model_validator(mode="after")
    def _feasible(self) -> LognormalTokens:
        ratio = self.p99_tokens / self.mean_tokens
        if not 1.0 < ratio <= math.exp(Z99 * Z99 / 2.0):
            raise ValueError(
                f"p99_tokens / mean_tokens = {ratio:.3g}: a lognormal needs a ratio in "
                f"(1, {math.exp(Z99 * Z99 / 2.0):.2f}]"
            )
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens = {self.max_tokens} is below min_tokens = "
                             f"{self.min_tokens}")
        return self

    def mu_sigma(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal: mean = exp(mu + sigma^2/2) and
        p99 = exp(mu + z99 sigma); the smaller root (the other has a heavier tail)."""
        r = math.log(self.p99_tokens / self.mean_tokens)
        sigma = Z99 - math.sqrt(Z99 * Z99 - 2.0 * r)
        return math.log(self.mean_tokens) - sigma * sigma / 2.0, sigma


class UniformTokens(Strict):
    """Token counts uniform on [min_tokens, max_tokens]."""

    kind: Literal["uniform"] = Field(description="Token distribution kind.")
    min_tokens: int = Field(ge=1, description="Smallest count, tokens.")
    max_tokens: int = Field(ge=1, description="Largest count, tokens.")

    @model_validator(mode="after")
    def _ordered(self) -> UniformTokens:
        if self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens = {self.max_tokens} is below min_tokens = "
                             f"{self.min_tokens}")
        return self


TokenDist = Annotated[LognormalTokens | UniformTokens, Field(discriminator="kind")]


class FixedLengths(Strict):
    """Every request has the same input and output length."""

    kind: Literal["fixed"] = Field(description="Length model kind.")
    input_tokens: int = Field(ge=1, description="Prompt tokens per request.")
    output_tokens: int = Field(ge=1, description="Output tokens per request.")


class DistributionLengths(Strict):
    """Independent input and output length distributions; optionally every prompt of the
    workload starts with the same text (a system / tool prompt) of ``shared_prefix_tokens``."""

    kind: Literal["distribution"] = Field(description="Length model kind.")
    input: TokenDist = Field(description="Prompt tokens per request (the whole prompt, shared "
                             "prefix included).")
    output: TokenDist = Field(description="Output tokens per request.")
    shared_prefix_tokens: int = Field(
        default=0, ge=0, description="Tokens at the start of every prompt of this workload "
        "that are the same text (a system or tool prompt), which a prefix cache can reuse "
        "across requests; a prompt shorter than this is all shared text. 0 = no shared "
        "prefix."
    )


class SharedPrefixLengths(Strict):
    """inference-perf's shared-prefix generator (system prompts shared by user groups)."""

    kind: Literal["shared_prefix"] = Field(description="Length model kind.")
    system_prompt_len: int = Field(ge=0, description="Shared system prompt, tokens.")
    question_len: int = Field(ge=1, description="Question per request, tokens.")
    output_len: int = Field(ge=1, description="Output per request, tokens.")
    num_groups: int = Field(ge=1, description="Distinct system prompts.")
    users_per_group: int = Field(ge=1, description="Users (sessions) per system prompt.")
    enable_multi_turn_chat: bool = Field(
        default=False, description="Each user sends rounds of a conversation (inference-perf's "
        "multi-turn mode); without carry_context every round is sent as system prompt + "
        "question, as the measured inference-perf runs did (same as capacitor validate)."
    )
    carry_context: bool = Field(
        default=False, description="With enable_multi_turn_chat: the context grows by "
        "question + output each answered round (a real conversation), as capacitor "
        "validate's carry_context column."
    )
    mean_rounds_per_session: float | None = Field(
        default=None, ge=1, description="With carry_context: conversations end after a "
        "geometric number of rounds with this mean, and the user starts a new one from the "
        "system prompt (LMSYS-Chat-1M, arXiv:2309.11998: 2.0 turns per conversation on "
        "average; the geometric shape is an assumption). None = one conversation per user "
        "for the whole run."
    )
    context_full: Literal["refuse", "truncate", "new_session"] = Field(
        default="refuse", description="With carry_context, what a user does when the next "
        "round would exceed max_model_len: refuse = send it anyway and get HTTP 400 "
        "(inference-perf); truncate = drop the oldest turns, keeping the system prompt; "
        "new_session = start a new conversation."
    )

    @model_validator(mode="after")
    def _sessions_need_context(self) -> SharedPrefixLengths:
        if self.carry_context and not self.enable_multi_turn_chat:
            raise ValueError("carry_context = True needs enable_multi_turn_chat: true")
        if not self.carry_context:
            for field, default in (("mean_rounds_per_session", None),
                                   ("context_full", "refuse")):
                if getattr(self, field) != default:
                    raise ValueError(f"{field} = {getattr(self, field)!r} needs carry_context: "
                                     "true (a context that is not carried never grows)")
        return self


class TraceLengths(Strict):
    """Replay a production trace: its arrival times and lengths (Mooncake hash_ids feed the
    prefix cache). The workload then has no ``arrival``."""

    kind: Literal["trace"] = Field(description="Length model kind.")
    path: str = Field(min_length=1, description="Trace file, relative to the scenario file.")
    format: Literal["azure", "mooncake"] = Field(
        description="azure: Azure LLM inference 2023 CSV; mooncake: Mooncake FAST'25 JSONL."
    )
    time_scale: float | None = Field(
        default=None, gt=0, description="Multiply the trace's timestamps by this (2 = half "
        "the rate); None with no target_rate_rps = as recorded."
    )
    target_rate_rps: float | None = Field(
        default=None, gt=0, description="Scale the timestamps so the mean rate is this, "
        "requests/s (alternative to time_scale)."
    )
    loop: bool = Field(
        default=True, description="Replay the trace again, back to back, when the window is "
        "longer than the (scaled) trace."
    )

    @model_validator(mode="after")
    def _one_scale(self) -> TraceLengths:
        if self.time_scale is not None and self.target_rate_rps is not None:
            raise ValueError("give time_scale or target_rate_rps, not both")
        return self


class WorkflowLengths(Strict):
    """Agentic workflows (:mod:`capacitor.workload.agentic`): each arrival of the workload
    starts one workflow of many model calls (user turns, tool rounds with their latency,
    subagents, a context that grows and is compacted), so the arrival rate counts
    workflows per second, not requests. A call is sent when the calls it waits for have
    answered plus the tool or think time; a refused or lost call fails its workflow and
    nothing after it is sent.

    Give ``preset`` (a generated workflow type; the workload needs an ``arrival``) or
    ``trace`` (recorded sessions replayed as workflows, :mod:`capacitor.workload.session_trace`;
    the trace's timestamps are the arrivals, so no ``arrival``)."""

    kind: Literal["workflow"] = Field(description="Length model kind.")
    preset: Literal["coding-agent", "support-agent", "deep-research", "rag-answer"] | None = \
        Field(
        default=None,
        description="Workflow type (capacitor/workload/agentic_presets.py has the sources): "
        "coding-agent (a coding assistant session fitted to TraceLab's 4,265 Claude Code / "
        "Codex sessions: ~84 calls, ~154 k input and ~523 output tokens per call, 96% of "
        "input tokens shared with earlier calls); support-agent (25-57 user turns, one tool "
        "call per turn, ~130 k tokens of context by the end); deep-research (one question, "
        "~6 lead steps fanning out ~3.5 parallel web searches a round and search subagents, "
        "a ~3 k-token report); rag-answer (query rewrite, retrieve + rerank, an answer "
        "reading 4-10 k tokens). Exclusive with trace."
    )
    trace: str | None = Field(
        default=None, min_length=1,
        description="Session trace to replay as workflows, relative to the scenario file: "
        "Mooncake FAST'25 JSONL (one call per line: timestamp in ms, input_length, "
        "output_length, hash_ids of its 512-token prefix blocks). Calls are grouped into "
        "sessions by the prefix blocks they reuse (a call sharing at least "
        "min_shared_blocks leading blocks with its prefix source continues that call), each "
        "continuing call sent after the call it continues is answered plus the recorded gap "
        "between their timestamps (think time). Exclusive with preset."
    )
    time_scale: float | None = Field(
        default=None, gt=0, description="Trace only: multiply the trace's timestamps (and so "
        "its gaps) by this (2 = half the rate); None = as recorded."
    )
    loop: bool = Field(
        default=True, description="Trace only: replay the trace again, back to back (fresh "
        "sessions), when the window is longer than the (scaled) trace."
    )
    min_shared_blocks: int = Field(
        default=2, ge=1, description="Trace only: leading prefix blocks a call must share with "
        "its prefix source to continue its session. 2 = more than the one block every prompt "
        "of the Mooncake conversation trace starts with (a common system prompt)."
    )

    @model_validator(mode="after")
    def _preset_or_trace(self) -> WorkflowLengths:
        if (self.preset is None) == (self.trace is None):
            raise ValueError("give preset (a generated workflow type) or trace (a session "
                             "trace to replay), exactly one")
        trace_only = {"time_scale", "loop", "min_shared_blocks"} & self.model_fields_set
        if self.preset is not None and trace_only:
            raise ValueError(f"{', '.join(sorted(trace_only))}: only with trace, not preset")
        return self

    @model_serializer(mode="wrap")
    def _drop_other_source(self, handler):
        # NOTE: a preset workload dumps as it did before traces could be replayed
        data = handler(self)
        if isinstance(data, dict) and self.trace is None:
            for key in ("trace", "time_scale", "loop", "min_shared_blocks"):
                data.pop(key, None)
        elif isinstance(data, dict):
            data.pop("preset", None)
        return data


Lengths = Annotated[
    FixedLengths | DistributionLengths | SharedPrefixLengths | TraceLengths | WorkflowLengths,
    Field(discriminator="kind"),
]


class Workload(Strict):
    """A stream of requests from one tenant to one deployment."""

    name: Name = Field(description="Unique workload name.")
    tenant: str = Field(min_length=1, description="Name of the tenant sending it.")
    deployment: str = Field(min_length=1, description="Name of the deployment serving it.")
    arrival: Arrival | None = Field(
        default=None, description="Arrival process (required unless lengths.kind is trace, "
        "whose timestamps are the arrivals)."
    )
    lengths: Lengths = Field(description="Prompt and output lengths.")
