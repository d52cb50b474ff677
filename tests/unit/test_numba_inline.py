"""The compile-time patch of numba's inliner (:mod:`capacitor.engine._numba_inline`): the
same inlined IR as numba's own, with the callee's scope copied once per copy instead of
once per block."""

from __future__ import annotations

import re
from collections import Counter

import numba
from numba.core import ir
from numba.core.compiler import Flags
from numba.core.inline_closurecall import InlineWorker
from numba.core.registry import cpu_target

from capacitor.engine import _numba_inline


@numba.njit(inline="always")
def _leaf(x):
    y = 0
    for k in range(x):
        if k % 3 == 0:
            y += k
        elif k % 3 == 1:
            y -= 1
        else:
            y *= 2
    return y


@numba.njit(inline="always")
def _middle(x):
    a = _leaf(x)
    b = _leaf(x + 1) if a > 0 else _leaf(x + 2)
    while b > 10:
        b //= 2
    return a + b


def _outer(x):
    return _middle(x) + _middle(x + 3) + _leaf(x)


def _untyped_ir(func):
    """numba's untyped passes over ``func`` (inlining included)."""
    flags = Flags()
    flags.nrt = True
    worker = InlineWorker(cpu_target.typing_context, cpu_target.target_context, {},
                          object(), flags, None)
    return worker.run_untyped_passes(func)


def _shape(func_ir):
    """The IR's statements with every number removed (labels and name counters differ from
    one compile to the next), as a multiset."""
    return Counter(re.sub(r"\d+", "", str(stmt)) for block in func_ir.blocks.values()
                   for stmt in block.body)


def _var_copies(func):
    """(IR, number of variable deep copies) of the untyped passes over ``func``."""
    count = [0]
    original = ir.Var.__deepcopy__

    def counting(self, memo):
        count[0] += 1
        return original(self, memo)

    ir.Var.__deepcopy__ = counting
    try:
        return _untyped_ir(func), count[0]
    finally:
        ir.Var.__deepcopy__ = original


def test_the_patch_is_installed_once():
    assert _numba_inline.install()
    patched = InlineWorker.inline_ir
    assert _numba_inline.install()  # a second call changes nothing
    assert InlineWorker.inline_ir is patched


def test_patched_inlining_gives_numbas_ir_with_far_fewer_copies():
    assert _numba_inline.install()
    patched = InlineWorker.inline_ir
    patched_ir, patched_copies = _var_copies(_outer)
    InlineWorker.inline_ir = patched.__wrapped__  # numba's own
    try:
        numba_ir, numba_copies = _var_copies(_outer)
    finally:
        InlineWorker.inline_ir = patched
    assert _shape(patched_ir) == _shape(numba_ir)
    assert sum(_shape(numba_ir).values()) > 100  # the three levels were inlined
    # numba copies the callee's scope (every variable) once per block; the patch once per
    # copy: here _middle (with two _leaf inlined) has ~20 blocks, so well over 5x fewer
    assert patched_copies * 5 < numba_copies


def test_inlined_functions_compute_the_same():
    # _outer(4) by hand: _leaf(4): k=0 -> 0, k=1 -> -1, k=2 -> -2, k=3 -> 1; so 1.
    # _leaf(5): then k=4 -> 0; _middle(4) = 1 + _leaf(5) (a > 0) = 1.
    # _leaf(7): k=5 -> 0, k=6 -> 6; _leaf(8): k=7 -> 5; _middle(7) = 6 + 5 = 11.
    # _outer(4) = 1 + 11 + 1 = 13
    assert numba.njit(_outer)(4) == 13
