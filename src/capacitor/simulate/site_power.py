"""Power of a run, per minute: each deployment's GPUs from what they did
(:mod:`capacitor.simulate.activity`, :mod:`capacitor.fleet.power`), each site's facility
draw, and each deployment's energy per output token.

A deployment's GPUs draw, per minute, :func:`capacitor.fleet.power.gpu_power_w` at the
minute's busy share (busy seconds over simulated replica-seconds) and its roofline shares
(HBM and tensor-core seconds over busy seconds), under its site's power limit (TDP when the
site is not capped); replicas down (failed, in repair) draw nothing. A site adds its idle
GPUs (installed, used by no deployment) and multiplies by the server overhead and PUE
(:func:`capacitor.fleet.power.facility_draw_w`).
"""

from __future__ import annotations

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.fleet.power import facility_draw_w, gpu_power_w, power_curve
from capacitor.simulate.digest import MINUTE_S, PoolDigest


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return np.clip(np.divide(part, whole, out=np.zeros_like(whole), where=whole > 0), 0.0, 1.0)


def _up_fraction(p: PoolDigest) -> np.ndarray:
    """Share of deployment ``p``'s simulated replica-time up (not failed or in repair) per
    minute; a down replica draws nothing."""
    return np.clip(1.0 - p.down_s / (p.simulated_replicas * MINUTE_S), 0.0, 1.0)


def pool_gpu_power_w(p: PoolDigest, limit: float = 1.0) -> np.ndarray:
    """Mean draw of one up GPU of deployment ``p`` per minute, W, under power ``limit``
    (fraction of TDP): its busy share is over the replicas up that minute."""
    up_s = p.simulated_replicas * MINUTE_S * _up_fraction(p)
    busy = _share(p.busy_s, up_s)
    return gpu_power_w(busy, _share(p.memory_s, p.busy_s), _share(p.compute_s, p.busy_s),
                       get_gpu(p.gpu).tdp_w, power_curve(p.gpu), limit=limit)


def pool_facility_w(site, p: PoolDigest, limit: float = 1.0) -> np.ndarray:
    """Facility watts of deployment ``p``'s GPUs at ``site`` per minute (overhead and PUE):
    its up GPUs at :func:`pool_gpu_power_w`, its down ones at nothing."""
    return facility_draw_w(pool_gpu_power_w(p, limit) * _up_fraction(p),
                           p.replicas * p.gpus_per_replica,
                           server_overhead_factor=site.overhead_factor(p.gpu), pue=site.pue)


def site_draw_w(site, digests: list[PoolDigest], num_minutes: int,
                limit: float = 1.0) -> np.ndarray:
    """Facility watts of ``site`` per minute: its deployments (from ``digests``) and its idle
    GPUs, every GPU under power ``limit`` (fraction of TDP)."""
    pools = [p for p in digests if p.site == site.name]
    power_w = np.zeros(num_minutes)
    for p in pools:
        power_w += pool_facility_w(site, p, limit)
    for gpu, count in site.gpus.items():  # GPUs no deployment uses idle
        used = sum(p.replicas * p.gpus_per_replica for p in pools if p.gpu == gpu)
        idle_w = get_gpu(gpu).tdp_w * power_curve(gpu).idle
        power_w += facility_draw_w(np.full(num_minutes, idle_w), max(count - used, 0),
                                   server_overhead_factor=site.overhead_factor(gpu),
                                   pue=site.pue)
    return power_w


__all__ = ["pool_facility_w", "pool_gpu_power_w", "site_draw_w"]
