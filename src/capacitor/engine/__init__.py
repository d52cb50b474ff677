"""One serving replica: vLLM v1 scheduling, paged KV with prefix caching, preemption.

``simulate`` runs the numba kernel; ``reference.simulate`` is its plain-Python twin.
"""

from capacitor.engine import _numba_inline
from capacitor.engine.config import EngineConfig
from capacitor.engine.result import EngineResult
from capacitor.engine.simulator import simulate

_numba_inline.install()  # before any kernel compiles: see the module

__all__ = ["EngineConfig", "EngineResult", "simulate"]
