"""Compile time: numba's ``inline="always"`` without its quadratic IR copy.

To inline a function, numba's ``InlineWorker.inline_ir`` (numba/core/inline_closurecall.py,
0.59 to 0.68) copies the callee's IR twice, deep-copying each block on its own. Every block
refers to the function's one scope, which lists every variable of the function, so each
block's copy copies the whole scope again: an inlining costs blocks x variables, and the
kernel inlines functions that already inlined others (several hundred blocks, thousands of
variables). Measured on the fleet kernel: numba's untyped passes with inlining take 28 s of
CPU, 5.5 s with the blocks of one inlining copied together.

:func:`install` makes the blocks copied during one inlining share a single copy memo, so
the scope is copied once. The IR is otherwise the same: the copies' scopes were equal
(numba checks the callee has one scope by equality) and numba then moves every inlined
block into the caller's scope. Nothing else deep-copies blocks while the patch is on (it
is on only inside ``inline_ir``, which runs under numba's compiler lock).

If numba's ``inline_ir`` is not where this expects it, nothing is installed: compiles are
slower, results the same.
"""

from __future__ import annotations

import copy
import functools

_INSTALLED = "_capacitor_shared_scope_copy"


def _shared_memo_deepcopy(memo_box):
    """A ``Block.__deepcopy__`` using the memo of the inlining in progress (``memo_box[0]``),
    whatever memo the caller started."""

    def deepcopy_block(block, _memo):
        memo = memo_box[0]
        done = memo.get(id(block))
        if done is not None:
            return done
        cls = block.__class__
        new = cls.__new__(cls)
        memo[id(block)] = new
        new.__dict__.update(copy.deepcopy(block.__dict__, memo))
        return new

    return deepcopy_block


def install() -> bool:
    """Patch numba's inliner (once per process); True when the patch is in place."""
    try:
        from numba.core import ir
        from numba.core.inline_closurecall import InlineWorker
    except ImportError:  # pragma: no cover  (numba moved its internals: leave it alone)
        return False
    inline_ir = getattr(InlineWorker, "inline_ir", None)
    if getattr(inline_ir, _INSTALLED, False):
        return True
    if inline_ir is None or "__deepcopy__" in vars(ir.Block):
        return False

    @functools.wraps(inline_ir)
    def shared_scope_inline_ir(self, *args, **kwargs):
        if "__deepcopy__" in vars(ir.Block):  # nested: the outer inlining's memo serves
            return inline_ir(self, *args, **kwargs)
        ir.Block.__deepcopy__ = _shared_memo_deepcopy([{}])
        try:
            return inline_ir(self, *args, **kwargs)
        finally:
            del ir.Block.__deepcopy__

    setattr(shared_scope_inline_ir, _INSTALLED, True)
    InlineWorker.inline_ir = shared_scope_inline_ir
    return True


__all__ = ["install"]
