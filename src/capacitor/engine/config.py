"""Engine settings of one replica, in vLLM's vocabulary, validated once at the edge."""

from __future__ import annotations

from dataclasses import dataclass

from capacitor.errors import ConfigError
from capacitor.perf.speculative import tokens_per_step_fp

#: KV admission policies by name (see EngineConfig.kv_reservation).
KV_RESERVATIONS = ("on_demand", "full_request")
#: Scheduling policies by name (vLLM ``--scheduling-policy``).
SCHEDULING_POLICIES = ("fcfs", "priority")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduler and KV-cache settings of one serving replica.

    Attributes:
        max_num_seqs: most sequences in one step's batch.
        max_num_batched_tokens: token budget of one step (decodes + prefill chunks).
        block_size: tokens per KV block.
        num_gpu_blocks: KV blocks the replica has (vLLM's "GPU KV cache blocks").
        enable_prefix_caching: reuse full blocks whose content was computed before.
        max_model_len: longest prompt + output accepted; longer requests are rejected.
            0 means the KV capacity (``num_gpu_blocks * block_size``); larger than the
            capacity is an error, as vLLM refuses to start then.
        num_cpu_blocks: KV blocks kept in host memory when a prefix block is evicted from
            the GPU (vLLM KV offloading); 0 disables the tier.
        cpu_load_s_per_block: time to bring one offloaded block back over the host link.
        ingress_s: client send to engine arrival (HTTP, tokenization, queue hand-off).
        egress_s: engine token to client (detokenization, streaming).
        kv_reservation: ``on_demand`` (vLLM, SGLang: blocks are allocated as tokens are
            computed; a request may be preempted when they run out) or ``full_request``
            (TensorRT-LLM's default ``GUARANTEED_NO_EVICT``: a request is admitted only
            when blocks for its prompt plus all its output are free, and is never
            preempted).
        scheduling_policy: ``fcfs`` (vLLM's default: first come, first served; preemption
            takes the most recently admitted request) or ``priority`` (vLLM
            ``--scheduling-policy priority``: the waiting queue is ordered by (priority,
            arrival) and preemption takes the lowest-priority, latest-arriving running
            request, even one already scheduled this step). Lower priority values first.
            One deviation: when a request preempts itself, vLLM schedules none of the running
            requests after it in that step; we go on with them.
        async_scheduling: the scheduler prepares step N+1 while step N runs on the GPU (vLLM
            >= 0.14 ``--async-scheduling``, on by default; SGLang's overlap scheduler). Step
            N+1's batch is therefore decided at the *start* of step N: it admits only requests
            that reached the engine by then (one arriving during step N is first computed in
            step N+2; when no step is in flight nothing is delayed), and requests finishing in
            step N still hold their KV blocks and their ``max_num_seqs`` seat while it is
            decided. Tokens still reach the client at the end of the step that computed them.
            Deviation: a finished request awaiting that release is never a preemption victim
            (in vLLM it is still on the running list).
        scheduler_recv_interval: the scheduler takes new requests in only every this many
            decode-only steps (SGLang ``--scheduler-recv-interval``, default 1: every step).
            SGLang's ``SchedulerRecvSkipper`` counts 1 per decode step and polls when the
            count reaches the interval; after a step that computed prompt tokens, or with
            nothing running, it polls at once. A request that arrives between polls waits
            in the socket, unseen by admission, until the next poll: on average about half
            the interval's decode steps of extra TTFT.
        attention_dp_timeout_iters, attention_dp_ranks: TensorRT-LLM's attention-DP
            balancing (``attention_dp_config: enable_balance: true, timeout_iters: N,
            batching_wait_iters: 0``; ``PyExecutor._balance_adp_requests``) over
            ``attention_dp_ranks`` ranks; 0 = off. New prompts are scheduled only when every
            rank has one, when some rank has no request decoding, or when N decisions have
            passed since prompts were last let in: its counter grows at every decision at
            which not every rank has a prompt waiting, arrivals or not. One scheduler stands
            for the ranks: every rank has a prompt when at least ``attention_dp_ranks``
            visible requests wait, and every rank decodes when at least that many requests
            decode (requests are spread evenly, as the balancing intends).
        num_speculative_tokens: MTP speculative decoding's draft tokens per step ``k`` (0:
            off). Each decoder then takes ``1 + k`` tokens of the step's budget (the verify
            pass), emits ``1 + accepted`` tokens (:mod:`capacitor.perf.speculative`), and holds
            KV blocks for its tokens plus ``k`` draft slots (every allocation, prefill chunks
            included, reserves ``k`` slots beyond its tokens, as vLLM's lookahead slots do).
        mtp_acceptance_rate: per-position draft acceptance (with ``num_speculative_tokens``).
        draft_coeffs: step-time coefficients of one MTP draft pass
            (:func:`capacitor.perf.speculative.draft_coefficients`); empty when off.
    """

    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_gpu_blocks: int
    enable_prefix_caching: bool = True
    max_model_len: int = 0
    num_cpu_blocks: int = 0
    cpu_load_s_per_block: float = 0.0
    ingress_s: float = 0.0
    egress_s: float = 0.0
    kv_reservation: str = "on_demand"
    scheduling_policy: str = "fcfs"
    async_scheduling: bool = False
    scheduler_recv_interval: int = 1
    attention_dp_timeout_iters: int = 0
    attention_dp_ranks: int = 1
    num_speculative_tokens: int = 0
    mtp_acceptance_rate: float = 0.0
    draft_coeffs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs={self.max_num_seqs}: must be >= 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens={self.max_num_batched_tokens} is below "
                f"max_num_seqs={self.max_num_seqs}; vLLM requires "
                "max_num_batched_tokens >= max_num_seqs"
            )
        if self.block_size < 1:
            raise ConfigError(f"block_size={self.block_size}: must be >= 1")
        if self.num_gpu_blocks < 1:
            raise ConfigError(f"num_gpu_blocks={self.num_gpu_blocks}: must be >= 1")
        capacity = self.num_gpu_blocks * self.block_size
        if self.max_model_len < 0 or self.max_model_len == 1:
            raise ConfigError(
                f"max_model_len={self.max_model_len}: must be >= 2 (or 0 for the KV capacity)"
            )
        if self.max_model_len > capacity:
            raise ConfigError(
                f"max_model_len={self.max_model_len} exceeds the KV cache capacity of "
                f"{capacity} tokens "
                f"(num_gpu_blocks={self.num_gpu_blocks} x block_size={self.block_size}); "
                "vLLM refuses to start such a server: lower max_model_len or add memory"
            )
        if self.num_cpu_blocks < 0 or self.cpu_load_s_per_block < 0:
            raise ConfigError("num_cpu_blocks and cpu_load_s_per_block must be >= 0")
        if self.ingress_s < 0 or self.egress_s < 0:
            raise ConfigError("ingress_s and egress_s must be >= 0")
        if self.scheduling_policy not in SCHEDULING_POLICIES:
            raise ConfigError(
                f"scheduling_policy={self.scheduling_policy!r}; valid: "
                f"{', '.join(SCHEDULING_POLICIES)}"
            )
        if self.scheduler_recv_interval < 1:
            raise ConfigError(
                f"scheduler_recv_interval={self.scheduler_recv_interval}: must be >= 1 "
                "(1: new requests are taken in at every step)"
            )
        if self.attention_dp_timeout_iters < 0 or self.attention_dp_ranks < 1:
            raise ConfigError(
                f"attention_dp_timeout_iters={self.attention_dp_timeout_iters}, "
                f"attention_dp_ranks={self.attention_dp_ranks}: must be >= 0 (0: no "
                "balancing) and >= 1"
            )
        if self.num_speculative_tokens < 0 or not 0.0 <= self.mtp_acceptance_rate <= 1.0:
            raise ConfigError(
                "num_speculative_tokens must be >= 0 and mtp_acceptance_rate in [0, 1]")
        width = 1 + self.num_speculative_tokens
        budget = self.max_num_batched_tokens
        if self.num_speculative_tokens and budget < self.max_num_seqs * width:
            raise ConfigError(
                f"max_num_batched_tokens={self.max_num_batched_tokens} is below max_num_seqs="
                f"{self.max_num_seqs} x (1 + num_speculative_tokens={self.num_speculative_tokens})"
                ": every decoder's verify pass must fit a step's token budget"
            )
        if self.num_speculative_tokens and not self.draft_coeffs:
            raise ConfigError("num_speculative_tokens > 0 needs the draft pass's draft_coeffs")
        if self.kv_reservation not in KV_RESERVATIONS:
            raise ConfigError(
                f"kv_reservation={self.kv_reservation!r}; valid: {', '.join(KV_RESERVATIONS)}"
            )

    @property
    def tokens_per_step_fp(self) -> int:
        """Expected tokens a decoder emits per step, fixed point (1.0 when speculative
        decoding is off); :func:`capacitor.perf.speculative.tokens_per_step_fp`."""
        return tokens_per_step_fp(self.num_speculative_tokens, self.mtp_acceptance_rate)

    @property
    def effective_max_model_len(self) -> int:
        """``max_model_len``, or the KV capacity in tokens when it is 0."""
        return self.max_model_len or self.num_gpu_blocks * self.block_size
