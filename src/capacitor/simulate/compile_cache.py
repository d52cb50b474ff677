"""Whether the first simulation will compile the numba kernel (about 1.2 minutes of CPU,
once per install and after an edit of the kernel's source), so the command line can say so
before it happens rather than sit silent.

The check is cheap: numba's on-disk cache keeps, next to the kernel's module, an index of
the compiled overloads stamped with the source file's modification time and size; an index
that is missing, stale or empty means the next call compiles. Looking does not compile or
import anything beyond the kernel's module.
"""

from __future__ import annotations

#: How long the one-time compile takes, to announce it: the default run's first time on a
#: 2-core machine, README "Setup" (before :mod:`capacitor.engine._numba_inline`: 101 s wall,
#: 96 s user CPU; with it, 0.74 times the user CPU measured side by side under the same
#: load, 139 -> 103 s: ~71 s user, ~75 s wall). Longer under load.
COMPILE_ESTIMATE_S = 75.0


def kernel_compile_pending() -> bool | None:
    """True when the fleet kernel has no compiled overload cached on disk for its current
    source (the next simulation compiles it), False when it has one, None when it cannot tell
    (the JIT is disabled, or numba keeps its cache differently).

    It does not notice an edit to a module the kernel inlines (numba's cache does not
    either): it answers for the cache numba will use.
    """
    try:
        from capacitor.engine._kernel import fleet_kernel

        cache = getattr(fleet_kernel, "_cache", None)
        load_index = getattr(getattr(cache, "_cache_file", None), "_load_index", None)
        if load_index is None:
            return None
        return len(load_index()) == 0
    except Exception:  # noqa: BLE001  (numba internals: any surprise means "cannot tell")
        return None


__all__ = ["COMPILE_ESTIMATE_S", "kernel_compile_pending"]
