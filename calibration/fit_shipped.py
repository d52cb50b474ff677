"""Regenerate the shipped profile: fit the prior to the public measurements, engine by engine.

    python calibration/fit_shipped.py   # writes src/capacitor/perf/data/default_profile.yaml

1. vLLM: ``../shared/data/validation`` (13 real vLLM runs on H100) from the prior
   ``src/capacitor/perf/data/prior_profile.yaml`` (specs, microbenchmarks; commented);
2. TensorRT-LLM: ``../shared/data/published/trtllm_v0.17_*`` (373 offline throughput rows on
   H100, H200, GH200, A100, L40S), starting from the result of step 1.

Each fit writes only its engine's layers (see ``capacitor.calibrate.profile_dict``), so the
two do not disturb each other. The out-of-sample errors are reported by
``capacitor calibrate ... --leave-out model|hardware`` (see the README's Fidelity section).
"""

from __future__ import annotations

import sys
from pathlib import Path

from capacitor.calibrate import fit, load_observations, plausibility_warnings, write_profile
from capacitor.perf.profile import PerfProfile, load_profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PRIOR = ROOT / "src" / "capacitor" / "perf" / "data" / "prior_profile.yaml"
OUT = ROOT / "src" / "capacitor" / "perf" / "data" / "default_profile.yaml"
# engine, experiments, measured, trust-region steps, optimizer starts averaged (see
# capacitor.calibrate.fit): the 13 vLLM runs leave several constants poorly told apart, so
# their fit averages 8 starts; the 373-row TensorRT-LLM table pins its constants in one.
STEPS = (
    ("vllm", DATA / "validation" / "experiments_trainval.csv",
     DATA / "validation" / "measured_trainval.csv", 60, 8),
    ("trtllm", DATA / "published" / "trtllm_v0.17_offline_experiments.csv",
     DATA / "published" / "trtllm_v0.17_offline_measured.csv", 8, 1),
)


def main() -> int:
    if not DATA.is_dir():
        print(f"reference data not found at {DATA}", file=sys.stderr)
        return 2
    profile = load_profile(PRIOR)
    for engine, experiments, measured, budget, starts in STEPS:
        observations = load_observations([(experiments, measured)])
        result = fit(observations, profile, max_nfev=budget, starts=starts)
        print(f"{engine}: {len(observations)} rows, cost {result.cost:.3f}, "
              f"{result.num_evaluations} passes: {result.message}")
        for name, mult in result.multipliers.items():
            print(f"  {name:48s} x{mult:.3f}")
        for warning in plausibility_warnings(result):
            print(f"  check: {warning}")
        profile = PerfProfile(result.profile, origin=f"<fit {engine}>")
    write_profile(profile.to_dict(), OUT,
                  "Fitted by calibration/fit_shipped.py from prior_profile.yaml to the public "
                  "vLLM validation runs and the TensorRT-LLM v0.17 throughput table.",
                  header="# capacitor's shipped engine profile. Generated: do not edit; change "
                         "prior_profile.yaml\n# and re-run calibration/fit_shipped.py.\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
