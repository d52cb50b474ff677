"""The reference twin's KV block cache: blocks on the GPU (free, pinned by a running
request's prefix nodes, or evictable in LRU order) and the optional host (CPU) tier.

Written plainly and independently of the kernel's per-node counters
(:mod:`capacitor.engine._kernel_cache`); :mod:`capacitor.engine.reference` uses it, and the
tests hold the two to identical results. A block is named ``(node, j)``: block ``j`` of
prefix node ``node`` (see :mod:`capacitor.engine.requests`).
"""

from __future__ import annotations

from collections import OrderedDict


class BlockCache:
    """Prefix-node block cache with per-block LRU bookkeeping (independent of the kernel's
    per-node counters): ``lru`` holds evictable blocks ``(node, j)`` oldest first."""

    def __init__(self, num_blocks: int, start: list[int], src: list[int], num_cpu_blocks: int):
        self.free_uncached = num_blocks
        self.num_cpu_blocks = num_cpu_blocks
        self.cpu: dict[int, set[int]] = {}
        self.cpu_lru: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.cached: dict[int, set[int]] = {}
        self.pins: dict[int, int] = {}
        self.lru: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.start = start
        self.src = src

    def chain(self, r: int) -> list[int]:
        out = [r]
        s = self.src[r]
        while s >= 0:
            out.append(s)
            s = self.src[s]
        return out

    def owner(self, r: int, j: int) -> int:
        node = r
        while j < self.start[node]:
            node = self.src[node]
        return node

    def num_free(self) -> int:
        return self.free_uncached + len(self.lru)

    def pin(self, r: int) -> None:
        for node in self.chain(r):
            self.pins[node] = self.pins.get(node, 0) + 1
            if self.pins[node] == 1:
                for j in self.cached.get(node, ()):
                    del self.lru[(node, j)]

    def unpin(self, r: int) -> None:
        for node in self.chain(r):
            self.pins[node] -= 1
            if self.pins[node] == 0:
                for j in sorted(self.cached.get(node, ()), reverse=True):
                    self.lru[(node, j)] = None

    def allocate(self, k: int) -> bool:
        if k <= 0:
            return True
        if self.num_free() < k:
            return False
        take = min(k, self.free_uncached)
        self.free_uncached -= take
        for _ in range(k - take):
            (node, j), _ = self.lru.popitem(last=False)
            self.cached[node].discard(j)
        return True

    def hit_blocks(self, r: int, num_tokens: int, block_size: int, tier: str = "gpu") -> int:
        """Leading blocks found on the GPU (``tier="gpu"``) or on GPU or host ("any")."""
        limit = (num_tokens - 1) // block_size
        j = 0
        while j < limit:
            node = self.owner(r, j)
            if j not in self.cached.get(node, ()) and (
                tier == "gpu" or j not in self.cpu.get(node, ())
            ):
                break
            j += 1
        return j

    def cpu_touch(self, node: int) -> None:
        """Write-through: the host tier holds every block the node has on the GPU; the
        node becomes most recently used there (its last block first out)."""
        if self.num_cpu_blocks <= 0:
            return
        blocks = self.cpu.setdefault(node, set())
        blocks.update(self.cached.get(node, ()))
        for j in sorted(blocks, reverse=True):
            self.cpu_lru.pop((node, j), None)
            self.cpu_lru[(node, j)] = None
        while len(self.cpu_lru) > self.num_cpu_blocks:
            (victim, j), _ = self.cpu_lru.popitem(last=False)
            self.cpu[victim].discard(j)


__all__ = ["BlockCache"]
