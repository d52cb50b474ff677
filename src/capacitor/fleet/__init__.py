"""The fleet layer: pools of replicas behind routers, admission and rate limits, tiers and
quotas, failures and repair (:mod:`~capacitor.fleet.failures`), and sites with power and PUE
(:mod:`~capacitor.fleet.power`)."""
