"""Indices into the fast kernel's state vectors and slot table.

The kernel keeps, per replica, one int64 row of scheduler counters and list heads
(``sched[rep, ...]``) and one float64 row of times (``clock[rep, ...]``); the fleet's own
counters (release cursors) sit in the int64 vector ``router``. A replica's running requests
live in ``max_num_seqs`` slots, ``slots[rep, field, slot]``:

    slots[rep]:   slot 0   slot 1   ...  slot S-1
      F_REQ         17       -1            4        request id (-1: free slot)
      F_PREV/NEXT   admission-ordered running list (doubly linked, -1 ends)
      F_RING_*      the per-finish-step bucket the decoder sits in (see _kernel docs)
      ...

A *decoding* slot stores only where it started (``F_CTX0`` tokens computed at step
``F_STEP0``), so its context at step ``G`` is ``F_CTX0 + G - F_STEP0`` without touching it.
"""

# per-replica int64 state: sched[rep, ...]
FREE_UNCACHED = 0  # free KV blocks holding no cached prefix
EVICTABLE = 1  # cached blocks of unpinned nodes (in the GPU LRU list)
LRU_HEAD = 2  # GPU LRU list of cached, unpinned nodes (LRU_HEAD + 1 is its tail)
LRU_TAIL = 3
RUN_HEAD = 4  # running list, in admission order
RUN_TAIL = 5
NUM_RUNNING = 6
NUM_DECODING = 7
SUM_CTX0_MINUS_STEP0 = 8  # sum over decoding slots of F_CTX0 - F_STEP0 (engine._speculative)
NUM_UNRELEASED = 9  # async scheduling: finished in the last step, blocks not yet released
WAIT_HEAD = 10
NUM_WAITING = 11
WAIT_TAIL = 12
NEXT_SEQ = 13  # admission sequence counter
CPU_TOTAL = 14  # blocks in the host tier
CPU_HEAD = 15  # host-tier LRU list (CPU_HEAD + 1 is its tail)
CPU_TAIL = 16
NUM_FREE_SLOTS = 17
STEP = 18  # scheduling iterations run so far (the next step's index)
MAX_USED_BLOCKS = 19
ACTIVE = 20  # the replica has work (an event pending)
NUM_PENDING_FINISH = 21  # finished requests whose release the router has not seen yet
RECV_COUNT = 22  # decode-only steps since the scheduler last polled for new requests
ADP_WAIT = 23  # decisions since attention-DP balancing last let prompts in
NUM_SCHED = 24

# per-replica float64 state: clock[rep, ...]
NOW_S = 0  # the replica's clock: when its next step starts
LAST_TOKEN_S = 1  # client time of the replica's last token (decode gaps start there)
BUSY_S = 2
CUTOFF_S = 3  # admit requests that reached the engine by then (inf: all): async scheduling
#              decides a step as the one before starts; a recv interval polls only now and then
RECV_S = 4  # when the scheduler last polled for new requests (recv interval > 1)
NUM_CLOCK = 5

# fleet-wide int64 state: router[...]
NEXT_CLOSED = 0  # closed-loop clients: the next request to send
NEXT_INITIAL = 1  # position in the pre-sorted initial releases
RR_CURSOR = 2  # round robin
NEXT_FAILURE = 3  # the next replica failure (index into PoolParams.fail_at_s)
NUM_ROUTER = 4

# slot fields: slots[rep, field, slot] (int64)
F_REQ = 0
F_PREV = 1
F_NEXT = 2
F_SEQ = 3  # admission sequence number (finishes are freed in this order)
F_DEC = 4  # 1 while decoding, 0 while prefilling
F_NUM_COMPUTED = 5  # prefill slots: tokens computed
F_CTX0 = 6  # decode slots: tokens computed at entry
F_STEP0 = 7  # decode slots: decode position at entry (the first decode step; MTP: its pos)
F_GENERATED0 = 8  # decode slots: tokens generated at entry
F_HIT_BLOCKS = 9  # blocks shared with the prefix cache
F_PRIVATE_BLOCKS = 10  # prefill: now; decode: at entry
F_LAST_STEP = 11  # decode slots: the step that emits the last token
F_RING_PREV = 12
F_RING_NEXT = 13
F_FREE_STACK = 14  # stack of free slot ids (slots[rep, F_FREE_STACK, :NUM_FREE_SLOTS])
F_SCHEDULED = 15  # G + 1 when the slot was scheduled in step G (priority preemption undoes it)
NUM_SLOT_FIELDS = 16

# rows of a replica's unreleased finishes: unreleased[rep, row, k]
U_REQ = 0
U_COMPUTED = 1
U_PRIVATE = 2
