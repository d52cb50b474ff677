"""A tenant's fleet-wide limits are split over its deployments by expected demand; the
summary reports the split (``tenants.<t>.limit_shares``), so more demand on one deployment
that moves another's share of the limits is named, not hidden."""

from __future__ import annotations

from capacitor.simulate import run_scenario
from capacitor.simulate.summary import _over_share_notes
from capacitor.simulate.summary_model import LimitShare
from tests.factories import make_scenario

# bronze sends 20 requests/s (constant) to each of two 4-replica deployments, d and e,
# under a fleet-wide limit of `limit` requests per minute.
E = {"name": "e", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100", "site": "s",
     "precision": "BF16", "max_num_seqs": 64, "max_num_batched_tokens": 2048, "replicas": 4}


def _run(limit: float, d_rate: float):
    base = make_scenario()
    deployments = [dict(base.deployments[0].model_dump(), replicas=4), E]
    workloads = [
        {"name": "b_d", "tenant": "bronze", "deployment": "d",
         "arrival": {"kind": "constant", "rate_rps": d_rate},
         "lengths": {"kind": "fixed", "input_tokens": 500, "output_tokens": 100}},
        {"name": "b_e", "tenant": "bronze", "deployment": "e",
         "arrival": {"kind": "constant", "rate_rps": 20},
         "lengths": {"kind": "fixed", "input_tokens": 500, "output_tokens": 100}},
    ]
    return run_scenario(make_scenario(**{
        "deployments": deployments, "workloads": workloads,
        "tenants.1.rate_limits": {"requests_per_min": limit}})).summary


def test_doubling_one_deployment_moves_the_others_limit_share_and_says_so():
    # 2,700 / min = 45 requests/s; expected demand 20 + 20: each deployment enforces half,
    # 22.5 requests/s, above its 20: nothing throttled
    before = _run(2700, 20)
    shares = before.tenants["bronze"].limit_shares
    assert shares["d"].share == shares["e"].share == 0.5
    assert shares["e"].throttled == 0.0 and shares["d"].throttled == 0.0
    # d doubled to 40 requests/s: expected demand 40 + 20, so e enforces 20 / 60 = 1/3 of
    # 45 = 15 requests/s and throttles 20 - 15 = 5 requests/s, 300 over the 60 s window;
    # d enforces 2/3 x 45 = 30 of its 40: 600 throttled
    after = _run(2700, 40)
    shares = after.tenants["bronze"].limit_shares
    assert shares["e"].share == 0.333 and shares["d"].share == 0.667
    assert abs(shares["e"].throttled - 300) <= 20
    assert abs(shares["d"].throttled - 600) <= 20
    assert shares["e"].traffic_share == 0.333  # 1,200 of 3,600 requests in the window
    # the tenant's totals are the sum of its deployments'
    assert after.tenants["bronze"].refusals.throttled == round(
        shares["d"].throttled + shares["e"].throttled, 1)


def test_with_limits_that_do_not_bind_the_other_deployment_is_unchanged():
    # 60,000 / min = 1,000 requests/s: whatever the split, e's 20 requests/s pass
    before = _run(60000, 20).tenants["bronze"].limit_shares["e"]
    after = _run(60000, 40).tenants["bronze"].limit_shares["e"]
    assert before.throttled == after.throttled == 0.0
    assert before.share == 0.5 and after.share == 0.333


def test_single_deployment_tenants_have_no_split():
    s = run_scenario(make_scenario(**{"tenants.1.rate_limits": {"requests_per_min": 900}}))
    assert s.summary.tenants["bronze"].limit_shares is None
    assert s.summary.tenants["gold"].limit_shares is None  # no limit at all


def test_a_deployment_over_its_share_and_throttled_is_named():
    from capacitor.simulate.summary_model import TenantSummary

    fields = {name: None for name in TenantSummary.model_fields}
    over = TenantSummary.model_construct(**(fields | {"limit_shares": {
        "d": LimitShare(share=0.5, traffic_share=0.7, throttled=120.0),
        "e": LimitShare(share=0.5, traffic_share=0.3, throttled=0.0)}}))
    notes = _over_share_notes({"bronze": over})
    assert notes == ["tenant bronze: d received 70.0% of its requests but enforces 50.0% of "
                     "its fleet-wide limits (split by expected demand, "
                     "tenants.bronze.limit_shares); 120 requests throttled there"]
    under = TenantSummary.model_construct(**(fields | {"limit_shares": {
        "d": LimitShare(share=0.5, traffic_share=0.7, throttled=0.0)}}))
    assert _over_share_notes({"bronze": under}) == []
