"""Indices into the fast kernel's state vectors.

``st[rep]`` (int64, one row per replica) holds a replica's scalars; the cache helpers get the
row as a 1-D view. ``gst`` (int64) holds the fleet's global scalars (release heap, cursors).
``stf[rep]`` (float64) holds a replica's clock, last token time, busy time and admission
cutoff.
"""

# per-replica int64 state (st[rep, ...])
_FREE_UNCACHED = 0
_EVICTABLE = 1
_LRU_HEAD = 2
_LRU_TAIL = 3
_RUN_HEAD = 4
_RUN_TAIL = 5
_NUM_RUNNING = 6
_N_DEC = 7
_SUM_C0_G0 = 8
_HEAP_SIZE = 9  # global (gst), shared index with the heap helpers
_WAIT_HEAD = 10
_WAIT_COUNT = 11
_NEXT_CLOSED = 12  # global (gst)
_INIT_PTR = 13  # global (gst)
_SEQ = 14
_CPU_TOTAL = 15
_CPU_HEAD = 16
_CPU_TAIL = 17
_WAIT_TAIL = 18
_NUM_FREE_SLOTS = 19
_G = 20
_MAX_USED = 21
_ACTIVE = 22  # replica has a pending event in the replica heap
_RR = 23  # global (gst): round-robin cursor
_PEND_N = 24  # finished requests whose release the router has not seen yet
_N_ZOMBIE = 25  # async scheduling: finished in the last step, blocks not yet released
_NUM_STATE = 26

# per-replica float64 state (stf[rep, ...])
_T = 0
_LAST_CLIENT_T = 1
_BUSY = 2
_CUTOFF = 3  # async scheduling: admit requests that reached the engine by then (inf: all)
_NUM_STATE_F = 4

# slot fields (slots[rep, field, slot], int64)
F_REQ = 0
F_PREV = 1
F_NEXT = 2
F_SEQ = 3
F_DEC = 4
F_COMPUTED = 5  # prefill slots: tokens computed
F_C0 = 6  # decode slots: computed at entry
F_G0 = 7  # decode slots: first decode step
F_GEN0 = 8  # decode slots: generated at entry
F_REF = 9
F_PRIVATE = 10  # prefill: now; decode: at entry
F_FIN = 11
F_BPREV = 12
F_BNEXT = 13
F_FREE = 14  # stack of free slot ids
F_SCHED = 15  # G + 1 when the slot was scheduled in step G (priority preemption undoes it)
NUM_SLOT_FIELDS = 16

# request status codes (status[i], int8): capacitor.engine.status
from capacitor.engine.status import S_COMPLETED, S_LOST, S_PENDING, S_REJECTED, S_SHED  # noqa: E402,F401
