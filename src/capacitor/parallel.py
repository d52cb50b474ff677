"""Threads for independent simulations in one process.

The engine kernel releases the GIL, so the pools of a fleet run (``simulate``), the rows of
``validate`` and the rows of a calibration step run one per CPU on threads
(:func:`map_ordered`). Every task is a pure function of its
inputs and results are taken in task order, so the results do not depend on the number of
threads.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Threads to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn`` over ``items``, ``workers`` at a time on threads, results in input order (a
    generator: each result is yielded as soon as it and all before it are done). At most
    ``workers + 1`` results are held at once, so memory stays bounded by a few tasks'."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="capacitor") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an early stop: do not start what is still queued
            for future in pending:
                future.cancel()


__all__ = ["default_workers", "map_ordered"]
