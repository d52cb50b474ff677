"""Indices into the fast kernel's int64 state vector ``st`` (scalars shared by helpers)."""

_FREE_UNCACHED = 0
_EVICTABLE = 1
_LRU_HEAD = 2
_LRU_TAIL = 3
_RUN_HEAD = 4
_RUN_TAIL = 5
_NUM_RUNNING = 6
_N_DEC = 7
_SUM_C0_G0 = 8
_HEAP_SIZE = 9
_WAIT_HEAD = 10
_WAIT_COUNT = 11
_NEXT_CLOSED = 12
_INIT_PTR = 13
_SEQ = 14
_CPU_TOTAL = 15
_CPU_HEAD = 16
_CPU_TAIL = 17
_NUM_STATE = 18

