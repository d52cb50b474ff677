"""Economics: contracts (monthly price, ramp discounts, term with an exclusive end month,
notice) and unit costs (GPU-hours, energy, $ per million tokens, effective $ per GPU-hour).
The fleet summary's costs (:func:`capacitor.simulate.summary.economics_summary`) and
``capacitor scenario check``'s contract lines are computed with these functions."""

from capacitor.economics.contracts import (
    Contract,
    earliest_exit,
    exit_cost_usd,
    in_term,
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
    "in_term",
    "monthly_cost",
    "total_cost",
    "usd_per_million_tokens",
    "window_cost_usd",
]
