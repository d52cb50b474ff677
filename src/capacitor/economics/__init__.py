"""Economics: contracts (monthly price, ramp discounts, term, notice) and unit costs
(GPU-hours, energy, $ per million tokens, effective $ per GPU-hour)."""

from capacitor.economics.contracts import (
    Contract,
    earliest_exit,
    exit_cost_usd,
    monthly_cost,
    total_cost,
)
from capacitor.economics.costs import (
    effective_usd_per_gpu_hour,
    energy_cost_usd,
    energy_mwh,
    gpu_hour_cost_usd,
    usd_per_million_tokens,
    window_cost_usd,
)

__all__ = [
    "Contract",
    "earliest_exit",
    "effective_usd_per_gpu_hour",
    "energy_cost_usd",
    "energy_mwh",
    "exit_cost_usd",
    "gpu_hour_cost_usd",
    "monthly_cost",
    "total_cost",
    "usd_per_million_tokens",
    "window_cost_usd",
]
