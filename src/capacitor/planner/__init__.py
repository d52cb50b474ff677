"""Capacity planning on top of the simulator: the goodput capacity of a deployment shape
(:mod:`capacitor.planner.capacity`), how many months a fleet's capacity lasts under demand
growth (:mod:`capacitor.planner.runway`), and the cheapest shapes and replica counts that
serve a scenario's peak within its SLOs (:mod:`capacitor.planner.search`)."""

from capacitor.planner.capacity import Capacity, replica_capacity

__all__ = ["Capacity", "replica_capacity"]
