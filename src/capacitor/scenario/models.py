"""The pydantic models of a scenario: what a fleet is, what it serves, how it is judged.

Only the shape and each field's own range are checked here; cross-references (sites,
tenants, deployments), GPU inventories, facility power and memory fit are checked by
:func:`capacitor.scenario.load_scenario` after parsing. Every model forbids unknown keys,
and every field carries a description (the JSON Schema shows them); units are in the names.

Conventions: months are ``"YYYY-MM"`` strings; hours of day are UTC; a contract's ``end``
month is exclusive (``start: 2026-05, end: 2029-05`` is 36 months); percentages are 0-100,
fractions 0-1.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
)

from capacitor.scenario.base import (  # noqa: F401 - re-exported
    ADMISSION_POLICIES,
    DEFAULT_GPUS_PER_NODE,
    DEFAULT_SERVER_OVERHEAD_FACTOR,
    ENGINES,
    MONTH_RE,
    NAME_RE,
    PRECISIONS,
    ROUTING_POLICIES,
    Z99,
    Month,
    Name,
    Strict,
    _lower,
    _month,
    _replicas,
    _upper,
    month_index,
)
from capacitor.scenario.demand import (  # noqa: F401 - re-exported
    Arrival,
    BurstyArrival,
    ConstantArrival,
    DistributionLengths,
    DiurnalArrival,
    FixedLengths,
    Lengths,
    LognormalTokens,
    PoissonArrival,
    SharedPrefixLengths,
    StagesArrival,
    TokenDist,
    TraceLengths,
    UniformTokens,
    WorkflowLengths,
    Workload,
    _ArrivalBase,
)
from capacitor.scenario.policies import (  # noqa: F401 - re-exported
    SLO,
    Admission,
    Contract,
    Economics,
    Quotas,
    RateLimits,
    Routing,
    Tenant,
    WorkflowSLO,
)
from capacitor.scenario.whatif import WhatIf

# ---- sites -----------------------------------------------------------------------------------


class Outage(Strict):
    """A whole-site outage: every replica of the site is down for the interval."""

    start_s: float = Field(ge=0, description="Start, seconds after the window start.")
    duration_s: float = Field(gt=0, description="Length of the outage, seconds.")


class Failures(Strict):
    """Hardware failures of a site, as independent exponential processes.

    A failed GPU or node takes down every replica that uses it until it is repaired; the
    in-flight requests of those replicas are lost or re-routed by the fleet layer.
    """

    gpu_mtbf_hours: dict[str, float] = Field(
        default_factory=dict,
        description="Mean time between failures of one GPU, hours, per GPU id of the site's "
        "inventory (a GPU type left out does not fail on its own).",
    )
    node_mtbf_hours: float | None = Field(
        default=None,
        gt=0,
        description="Mean time between failures of one server (host, NIC, PSU, cabling), "
        "hours; a node failure takes all its GPUs down. None = nodes do not fail.",
    )
    gpus_per_node: dict[str, int] = Field(
        default_factory=dict,
        description=f"GPUs per server, per GPU id (default {DEFAULT_GPUS_PER_NODE}: HGX/DGX "
        "boards; a GB200 NVL72 compute tray holds 4).",
    )
    repair_hours: float = Field(
        default=24.0,
        gt=0,
        description="Mean time to repair a failed GPU or node, hours (exponential).",
    )
    outages: list[Outage] = Field(
        default_factory=list, description="Whole-site outage events inside the window."
    )
    nvlink_domain_blast_radius: bool = Field(
        default=True,
        description="On GPUs whose NVLink domain spans several servers (the catalogue's "
        "nvlink_domain_gpus: 72 for GB200 / GB300 NVL72), a GPU or server failure takes down "
        "every replica in its domain until repaired (ASSUMPTION: replacing a tray "
        "re-initialises the rack's NVLink fabric); false = only the replicas on the failed "
        "GPU or server.",
    )

    @field_validator("gpu_mtbf_hours")
    @classmethod
    def _positive_mtbf(cls, value: dict[str, float]) -> dict[str, float]:
        for gpu, hours in value.items():
            if not hours > 0:
                raise ValueError(f"gpu_mtbf_hours[{gpu}] = {hours!r}: must be > 0 hours")
        return value

    @field_validator("gpus_per_node")
    @classmethod
    def _positive_node(cls, value: dict[str, int]) -> dict[str, int]:
        for gpu, count in value.items():
            if count < 1:
                raise ValueError(f"gpus_per_node[{gpu}] = {count!r}: must be >= 1")
        return value


class Site(Strict):
    """A data centre: its GPUs, its power envelope and how its hardware fails."""

    name: Name = Field(description="Unique site name, referenced by deployments.")
    power_cap_mw: float = Field(
        gt=0,
        le=10_000,
        description="Facility power available to the site, MW (grid + sustained on-site "
        "generation). When the site's draw would exceed it, its GPUs run power-limited and "
        "its steps slower (a what-if to sweep); an inventory whose nameplate (every GPU at "
        "TDP x server overhead x PUE) exceeds it is a warning, not an error.",
    )
    pue: float = Field(
        ge=1.0,
        le=3.0,
        description="Power usage effectiveness: facility power / IT power (dimensionless, "
        ">= 1; industry average 1.56-1.58, hyperscale 1.1-1.2 per fleet_facts.csv).",
    )
    gpus: dict[str, int] = Field(
        min_length=1,
        description="GPU inventory: GPU id (as `capacitor gpus` lists; aliases accepted) -> "
        "number of GPUs installed.",
    )
    server_overhead_factor: float = Field(
        default=DEFAULT_SERVER_OVERHEAD_FACTOR,
        ge=1.0,
        le=4.0,
        description="IT power per GPU as a multiple of the GPU's TDP: the GPU plus its share "
        "of the server (CPU, memory, NIC, NVSwitch, fans, PSU loss; fabric switches outside "
        f"the server are not in it). Default {DEFAULT_SERVER_OVERHEAD_FACTOR:g} = NVIDIA DGX "
        "H100 maximum system power 10.2 kW / (8 x 700 W), rounded.",
    )
    server_overhead_factor_by_gpu: dict[str, float] = Field(
        default_factory=dict,
        description="Per GPU id override of server_overhead_factor (e.g. rack-scale GB200 "
        "NVL72 systems).",
    )
    failures: Failures = Field(
        default_factory=Failures, description="Failure and repair model of the site."
    )

    @field_validator("gpus")
    @classmethod
    def _positive_counts(cls, value: dict[str, int]) -> dict[str, int]:
        for gpu, count in value.items():
            if isinstance(count, bool) or count < 1:
                raise ValueError(f"gpus[{gpu}] = {count!r}: a GPU count must be >= 1")
        return value

    @field_validator("server_overhead_factor_by_gpu")
    @classmethod
    def _factor_range(cls, value: dict[str, float]) -> dict[str, float]:
        for gpu, factor in value.items():
            if not 1.0 <= factor <= 4.0:
                raise ValueError(
                    f"server_overhead_factor_by_gpu[{gpu}] = {factor!r}: must be in [1, 4] "
                    "(a multiple of the GPU's TDP)"
                )
        return value

    def overhead_factor(self, gpu: str) -> float:
        """Server-overhead factor of GPU id ``gpu`` at this site."""
        return self.server_overhead_factor_by_gpu.get(gpu, self.server_overhead_factor)


# ---- deployments -----------------------------------------------------------------------------


class DisaggPool(Strict):
    """One pool of a disaggregated deployment: its workers per unit, their parallelism and
    their engine limits (every other engine setting is the deployment's)."""

    workers: int = Field(ge=1, description="Workers (engine instances) of this pool in one "
                         "unit of the deployment (Dynamo / SGLang PD: prefill or decode "
                         "workers).")
    tp: int = Field(default=1, ge=1, description="Tensor-parallel GPUs per worker (no "
                    "pipeline parallelism in a disaggregated pool).")
    ep: int | None = Field(default=None, ge=1, description="Expert-parallel size over the "
                           "worker's GPUs (MoE only); None = 1.")
    dp_attention: bool = Field(default=False, description="Attention data-parallel over the "
                               "worker's tp GPUs, MoE layers expert-parallel (SGLang "
                               "--enable-dp-attention, TensorRT-LLM enable_attention_dp).")
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="Max running sequences per worker; None = the "
        "deployment's max_num_seqs (None there = engine default).")
    max_num_batched_tokens: int | None = Field(
        default=None, ge=1, description="Token budget of one engine step of a worker; None "
        "= the deployment's max_num_batched_tokens (None there = engine default).")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of GPU memory a worker may use (0-1]; "
        "None = the deployment's gpu_memory_utilization (None there = engine default).")

    @property
    def gpus(self) -> int:
        """GPUs of this pool in one unit (workers x tp)."""
        return self.workers * self.tp


class Disaggregated(Strict):
    """Disaggregated prefill/decode serving (SGLang PD disaggregation, NVIDIA Dynamo): each
    unit of the deployment is ``prefill.workers`` prefill workers and ``decode.workers`` decode
    workers; a request's prompt is computed on a prefill worker, its KV moves to a decode
    worker (NVLink when a routing cell's GPUs fit one NVLink domain, else the scale-out
    NIC), which generates its output (:mod:`capacitor.engine.disaggregated`)."""

    prefill: DisaggPool = Field(description="The prefill pool of one unit.")
    decode: DisaggPool = Field(description="The decode pool of one unit.")


class Deployment(Strict):
    """A pool of identical replicas of one model on one GPU type at one site (or, with
    ``disaggregated``, of identical prefill + decode units)."""

    name: Name = Field(description="Unique deployment name, referenced by workloads.")
    model: str = Field(
        min_length=1,
        description="Bundled model name, Hugging Face repo id (`capacitor models` lists "
        "both), or a path to a config.json (relative to the scenario file).",
    )
    gpu: str = Field(min_length=1, description="GPU id the replicas run on.")
    site: str = Field(min_length=1, description="Name of the site whose GPUs are used.")
    precision: Annotated[
        Literal["FP16", "BF16", "FP8", "FP4"] | None, BeforeValidator(_upper)
    ] = Field(
        default=None,
        description="Weight precision FP16/BF16/FP8/FP4; None = the checkpoint's own.",
    )
    tp: int = Field(default=1, ge=1, description="Tensor-parallel GPUs per replica.")
    pp: int = Field(default=1, ge=1, description="Pipeline-parallel stages per replica.")
    ep: int | None = Field(
        default=None,
        ge=1,
        description="Expert-parallel size over the same GPUs (MoE only; must equal tp, as "
        "vLLM's --enable-expert-parallel); None = 1.",
    )
    engine: Annotated[Literal["vllm", "sglang", "trtllm"], BeforeValidator(_lower)] = Field(
        default="vllm", description="Serving engine profile: vllm, sglang or trtllm."
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="Max running sequences per replica; None = engine "
        "default."
    )
    max_num_batched_tokens: int | None = Field(
        default=None, ge=1, description="Token budget of one engine step; None = engine "
        "default."
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of GPU memory the engine may use "
        "(0-1]; None = engine default (0.9 for vLLM)."
    )
    enable_prefix_caching: bool | None = Field(
        default=None, description="Automatic prefix caching; None = engine default (on)."
    )
    block_size: int | None = Field(
        default=None, ge=1, description="KV-cache block size, tokens; None = engine default."
    )
    kv_cache_dtype: Annotated[
        Literal["auto", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"], BeforeValidator(_lower)
    ] = Field(default="auto", description="KV-cache dtype in vLLM's names (auto = 16-bit).")
    cpu_offload: bool = Field(
        default=False, description="Also keep KV blocks in host memory (vLLM KV offloading)."
    )
    max_model_len: int | None = Field(
        default=None, ge=1, description="Longest request (prompt + output) accepted, tokens; "
        "None = the longest that fits the KV cache and the model."
    )
    speculative: Annotated[Literal["none", "mtp"], BeforeValidator(_lower)] = Field(
        default="none", description="Speculative decoding: none, or mtp (the model's "
        "multi-token-prediction layers draft tokens that each decode step verifies; needs a "
        "model with num_nextn_predict_layers > 0, e.g. DeepSeek-V3/R1)."
    )
    num_speculative_tokens: int | None = Field(
        default=None, ge=1, le=16, description="Draft tokens per decode step with mtp; None = "
        "2 with sglang, else 3, or 1 with dp_attention (SemiAnalysis InferenceX's DeepSeek-R1 "
        "MTP runs)."
    )
    mtp_acceptance_rate: float | None = Field(
        default=None, ge=0, le=1, description="Probability that each draft token is accepted "
        "(given the ones before it were) with mtp; None = 0.69 (acceptance length 2.49 at 3 "
        "drafts, as SemiAnalysis measured for DeepSeek-R1 on chat-templated random prompts)."
    )
    dp_attention: bool = Field(
        default=False, description="Attention data-parallel over the replica's tp GPUs, MoE "
        "layers expert-parallel (SGLang --enable-dp-attention, TensorRT-LLM "
        "enable_attention_dp); a disaggregated deployment sets it per pool."
    )
    ep_num_redundant_experts: int | None = Field(
        default=None, ge=0, description="Extra physical experts per MoE layer (SGLang "
        "--ep-num-redundant-experts), in every replica or worker; None = the fewest that "
        "make the experts divide over ep (0 when ep divides them)."
    )
    scheduler_recv_interval: int | None = Field(
        default=None, ge=1, description="SGLang only (--scheduler-recv-interval): the "
        "scheduler polls for new requests after a step with prompt tokens or after this many "
        "decode-only steps; None = 1 (every step)."
    )
    attention_dp_timeout_iters: int | None = Field(
        default=None, ge=1, description="TensorRT-LLM with dp_attention only "
        "(attention_dp_config: enable_balance, timeout_iters): prompts wait until every "
        "attention-DP rank has one or this many scheduler iterations pass; None = no "
        "balancing."
    )
    disaggregated: Disaggregated | None = Field(
        default=None, description="Disaggregated prefill/decode: each replica is a unit of "
        "prefill.workers prefill workers and decode.workers decode workers (tp, pp and ep are "
        "then set per pool; max_num_seqs, max_num_batched_tokens and gpu_memory_utilization "
        "are each pool's default); replicas counts units. None = aggregated replicas."
    )
    replicas: Annotated[int | Literal["fill"], BeforeValidator(_replicas)] = Field(
        description="Number of replicas (units of a disaggregated deployment), or 'fill': as "
        "many as the site's GPUs of this type left over by the other deployments allow."
    )

    @model_serializer(mode="wrap")
    def _aggregated_without_the_key(self, handler: Any) -> Any:
        """An aggregated deployment dumps as before ``disaggregated`` existed (no key)."""
        data = handler(self)
        if self.disaggregated is None and isinstance(data, dict):
            data.pop("disaggregated", None)
        return data

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one replica occupies: tp x pp, or for a disaggregated deployment one unit's
        prefill.workers x prefill.tp + decode.workers x decode.tp. Every GPU count of a
        deployment (inventory, power, cost) is replicas x this."""
        d = self.disaggregated
        if d is not None:
            return d.prefill.gpus + d.decode.gpus
        return self.tp * self.pp


# ---- simulation ------------------------------------------------------------------------------


class Window(Strict):
    """The simulated span: an hour of a day of a month."""

    month: Month | None = Field(
        default=None, description="Month simulated, 'YYYY-MM' (sets demand growth and the "
        "contract price); None = rates as written."
    )
    hour: int | None = Field(
        default=None, ge=0, le=23, description="UTC hour of day the window starts; None = "
        "the hour of peak total diurnal demand (0 without diurnal workloads)."
    )
    duration_s: float = Field(default=3600.0, gt=0, description="Window length, seconds.")
    warmup_s: float = Field(
        default=0.0, ge=0, description="Seconds simulated before the window so the fleet "
        "starts in steady state; their requests are not counted."
    )


class Simulation(Strict):
    """How the scenario is simulated."""

    window: Window = Field(default_factory=Window, description="The simulated span.")
    seed: int = Field(default=0, ge=0, description="Random seed (same seed, same results).")
    fidelity: Literal["exact", "sampled"] = Field(
        default="sampled", description="exact: every replica; sampled: sampled_replicas "
        "representative replicas per deployment at the load the router implies, scaled up."
    )
    sampled_replicas: int = Field(
        default=64, ge=1, description="Replicas simulated per deployment in sampled mode "
        "(all of them when a deployment has fewer; units of a disaggregated deployment)."
    )
    shard_replicas: int = Field(
        default=64, ge=1, description="Routing cell size (units of a disaggregated "
        "deployment, whose KV moves over NVLink when a cell's GPUs fit one NVLink domain): "
        "a deployment of more replicas is "
        "simulated as ceil(replicas / shard_replicas) near-equal cells, each behind its own "
        "router with its share of the demand (a first-level load balancer spreads requests "
        "over the cells). exact simulates every cell; sampled one cell of sampled_replicas, "
        "which is representative of them when sampled_replicas = shard_replicas."
    )
    profile: str | None = Field(
        default=None, description="Calibration profile YAML (as --profile), relative to the "
        "scenario file; None = the shipped profile."
    )


# ---- the scenario ----------------------------------------------------------------------------


class Scenario(Strict):
    """A fleet, the demand on it, its policies and prices, and how to simulate it."""

    name: Name = Field(description="Scenario name (names the run directory).")
    description: str = Field(default="", description="Free text.")
    sites: list[Site] = Field(min_length=1, description="Data centres.")
    deployments: list[Deployment] = Field(min_length=1, description="Model deployments.")
    tenants: list[Tenant] = Field(min_length=1, description="Customer classes and tiers.")
    workloads: list[Workload] = Field(min_length=1, description="Request streams.")
    routing: Routing = Field(default_factory=Routing, description="Replica selection.")
    admission: Admission = Field(default_factory=Admission, description="Admission control.")
    economics: Economics = Field(default_factory=Economics, description="Prices.")
    simulation: Simulation = Field(default_factory=Simulation, description="Simulation "
                                   "settings.")
    what_if: list[WhatIf] = Field(
        default_factory=list, description="What-ifs whose runway capacitor plan walks beside "
        "the base case (contract exit, site outage, power cap change, agentic demand shift, "
        "GPU swap); capacitor run ignores them: a run is the scenario as it stands.")

    @model_serializer(mode="wrap")
    def _no_empty_what_if(self, handler: Any) -> Any:
        """A scenario without what-ifs dumps as before ``what_if`` existed (no key)."""
        data = handler(self)
        if not self.what_if and isinstance(data, dict):
            data.pop("what_if", None)
        return data

    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file the scenario was loaded from (None: built in code)."""
        return self._source

    def site(self, name: str) -> Site:
        """The site called ``name`` (KeyError when absent)."""
        return _by_name(self.sites, name)

    def deployment(self, name: str) -> Deployment:
        """The deployment called ``name`` (KeyError when absent)."""
        return _by_name(self.deployments, name)

    def tenant(self, name: str) -> Tenant:
        """The tenant called ``name`` (KeyError when absent)."""
        return _by_name(self.tenants, name)


def _by_name(items: list[Any], name: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)


__all__ = [
    "ADMISSION_POLICIES",
    "DEFAULT_GPUS_PER_NODE",
    "DEFAULT_SERVER_OVERHEAD_FACTOR",
    "ENGINES",
    "PRECISIONS",
    "ROUTING_POLICIES",
    "Admission",
    "Arrival",
    "BurstyArrival",
    "ConstantArrival",
    "Contract",
    "Deployment",
    "DistributionLengths",
    "DisaggPool",
    "Disaggregated",
    "DiurnalArrival",
    "Economics",
    "Failures",
    "FixedLengths",
    "Lengths",
    "LognormalTokens",
    "Outage",
    "PoissonArrival",
    "Quotas",
    "RateLimits",
    "Routing",
    "SLO",
    "Scenario",
    "SharedPrefixLengths",
    "Simulation",
    "Site",
    "StagesArrival",
    "Tenant",
    "TokenDist",
    "TraceLengths",
    "WorkflowLengths",
    "WorkflowSLO",
    "UniformTokens",
    "Window",
    "Workload",
    "month_index",
]
