"""Normalise prefix chains so that block ownership along a chain is monotone.

Request ``i`` shares its first ``prefix_len[i]`` tokens with node ``prefix_src[i]``. Block
``j`` of node ``n`` is *its own* when ``j >= start(n) = prefix_len[n] // block_size``; blocks
below ``start(n)`` it inherits from its source. If a request shares with its source only
blocks the source itself inherited, the request should point at the source's source. After
:func:`normalise_prefix_chains` every chain ``r -> src(r) -> ...`` has strictly decreasing
``start`` values going up, so the blocks of a request tile as::

    root        node k-1     ...     src(r)          r (own blocks)
    [0, s_k-1) [s_k-1, s_k-2) ...   [s_1, s_0)      [s_0, ...)

Used by both the fast kernel and the reference (it is input preparation, not semantics).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _normalise(src: np.ndarray, plen: np.ndarray, node_len: np.ndarray, block_size: int) -> int:
    n = src.shape[0]
    depth = np.zeros(n, np.int32)
    max_depth = 0
    for r in range(n):
        s = src[r]
        if s < 0:
            plen[r] = 0
            continue
        length = min(plen[r], node_len[s])
        # Re-point while every shared full block is inherited by the source.
        while s >= 0 and length // block_size <= plen[s] // block_size and src[s] >= 0:
            length = min(length, plen[s])
            s = src[s]
        if length // block_size == 0:
            s = -1
            length = 0
        src[r] = s
        plen[r] = length
        if s >= 0:
            depth[r] = depth[s] + 1
            max_depth = max(max_depth, depth[r])
    return max_depth


def normalise_prefix_chains(
    prefix_src: np.ndarray,
    prefix_len: np.ndarray,
    prompt_len: np.ndarray,
    output_len: np.ndarray,
    segment_len: np.ndarray,
    block_size: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(src, plen, max_depth)`` over the node space (requests then segments);
    ``max_depth`` is the longest chain of sources above any node.

    Segments are roots (no source). A request node's length is its prompt plus output.
    Sources must come before their dependants for requests (``prefix_src[i] < i`` or a
    segment), which every generator guarantees; this makes one forward pass sufficient.
    """
    n = prompt_len.shape[0]
    num_nodes = n + segment_len.shape[0]
    src = np.full(num_nodes, -1, np.int32)
    plen = np.zeros(num_nodes, np.int32)
    src[:n] = prefix_src
    plen[:n] = prefix_len
    node_len = np.empty(num_nodes, np.int32)
    node_len[:n] = prompt_len + output_len
    node_len[n:] = segment_len
    max_depth = _normalise(src, plen, node_len, block_size)
    return src, plen, int(max_depth)
