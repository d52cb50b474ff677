"""A binding power cap: a site whose draw would exceed ``power_cap_mw`` runs power-capped.

:func:`capacitor.simulate.run.run_scenario` simulates the fleet uncapped first. For every
site whose busiest minute then draws more than its cap, :func:`cap_limits` finds the largest
per-GPU power limit (one fraction of TDP for every GPU of the site) that holds the site's
draw, recomputed from the same minutes' activity under that limit, to the cap
(:func:`capacitor.fleet.power.power_limit_for_cap`); :func:`cap_slowdowns` turns each limit
into its deployments' step-time multipliers (:func:`capacitor.fleet.power.step_slowdowns`),
and the deployments of those sites are simulated again with slower steps. Slower steps keep
replicas busy longer, which can raise a minute's draw again, so the check repeats on the new
run (a lower limit where a site is still over) for at most :data:`MAX_CAP_PASSES` passes; a
site at the driver's minimum limit and still over its cap stays over it, and the summary says
so (``sites.<name>.power_mw_peak`` above ``power_cap_mw``).
"""

from __future__ import annotations

from capacitor.fleet.power import MIN_POWER_LIMIT_FRACTION, power_curve, power_limit_for_cap
from capacitor.fleet.power import step_slowdowns as gpu_step_slowdowns
from capacitor.scenario import facility_power_mw
from capacitor.simulate.site_power import site_draw_w

MAX_CAP_PASSES = 3  # capped re-simulations after the uncapped one
_TOL = 1e-9  # relative: a draw this close to the cap is at it


def nameplate_fits(scenario) -> bool:
    """True when every site's GPUs at full TDP (the most they can draw) fit its cap, so no
    cap can bind and one uncapped pass is the run."""
    return all(facility_power_mw(s) <= s.power_cap_mw for s in scenario.sites)


def over_cap(site, digests, num_minutes: int, limit: float) -> bool:
    """True when ``site``'s busiest minute draws more than its cap under ``limit``."""
    cap_w = site.power_cap_mw * 1e6
    return float(site_draw_w(site, digests, num_minutes, limit).max(initial=0.0)) \
        > cap_w * (1.0 + _TOL)


def cap_limits(scenario, digests, num_minutes: int,
               limits: dict[str, float]) -> dict[str, float]:
    """The power limits (site name -> fraction of TDP) for the next pass: ``limits`` with a
    lower limit for every site that the run of ``digests`` (simulated under ``limits``) shows
    over its cap and that is not at the driver's minimum yet. Returns ``limits`` unchanged
    (equal) when no site needs a lower one."""
    out = dict(limits)
    for site in scenario.sites:
        current = limits.get(site.name, 1.0)
        if current <= MIN_POWER_LIMIT_FRACTION or not over_cap(site, digests, num_minutes,
                                                                current):
            continue
        limit = power_limit_for_cap(
            lambda x, s=site, c=current: site_draw_w(s, digests, num_minutes, min(x, c)),
            site.power_cap_mw * 1e6)
        if limit is not None and limit < current:
            out[site.name] = limit
    return out


def cap_slowdowns(scenario, limits: dict[str, float]) -> dict[str, tuple[float, float]]:
    """``(compute, memory)`` step-time multipliers of every deployment at a capped site."""
    return {d.name: gpu_step_slowdowns(power_curve(d.gpu), limits[d.site])
            for d in scenario.deployments if d.site in limits}


__all__ = ["MAX_CAP_PASSES", "cap_limits", "cap_slowdowns", "nameplate_fits", "over_cap"]
