"""KV buffers per sequence, the prefix cache that lets a new request skip a prompt prefix it shares
with an earlier one, and the vision-feature cache.

Reuse is by *prefix*, because OpenAI-style clients resend the whole conversation every turn. A
sequence's tokens are hashed as a chain, h[i] = H(h[i-1], token[i], image digest if the token is an
image pad): image pads all share one token id, so the digest of the image they stand for must be
part of the key, or two different pages would look like the same prompt. A finished sequence is
kept with the hash of every prefix it holds; a new request looks up its own chain from the longest
prefix down and copies the keys/values of the longest match. Qwen3-VL's multimodal rotary positions
need no extra state: every request's positions are computed over its whole prompt (images included),
so the cached part's positions are the ones the new request would have given those tokens anyway.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Arenas up to this size per layer tensor are zeroed at creation (KVArena.__init__). Above it
# glibc and torch's CPU allocator take the memory from mmap, whose pages are zero.
_ZERO_ARENA_BYTES = 32 * 1024 * 1024


class KVArena:
    """The KV buffers of the sequences running at once, one tensor per layer for keys and one for
    values: (slots, kv_heads, slot_tokens, head_dim). A running sequence owns one slot; its
    `SequenceKV` buffers are views of that slot, so the keys of every decoding sequence already sit
    in one tensor and decode attention is one call per layer for the whole batch (a masked view,
    no copy). `torch.empty` maps pages lazily, so memory grows with the tokens actually written,
    not with `slot_tokens`.
    """

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, slots: int, slot_tokens: int
    ):
        shape = (slots, kv_heads, slot_tokens, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype) for _ in range(layers)]
        self.values = [torch.empty(shape, dtype=dtype) for _ in range(layers)]
        # Batched decode attention reads every slot of its view up to the batch's longest sequence
        # and masks what a sequence has not written. A masked key still enters the product, so a
        # NaN or inf there (and 0 x NaN in the values) would poison the row: the unwritten part
        # must hold finite numbers. A big arena is mapped straight from the OS, whose fresh pages
        # are zero (and stay unmapped until written); a small one may reuse freed heap memory
        # holding anything, so it is zeroed here (a few MB at most).
        if self.keys and self.keys[0].nbytes <= _ZERO_ARENA_BYTES:
            for tensor in (*self.keys, *self.values):
                tensor.zero_()
        self.slot_tokens = slot_tokens
        self._free = list(range(slots - 1, -1, -1))  # pop() hands out the lowest slot first

    def take(self) -> int | None:
        return self._free.pop() if self._free else None

    def give_back(self, slot: int) -> None:
        self._free.append(slot)
        self._free.sort(reverse=True)


class SequenceKV:
    """Per-layer key/value buffers of one sequence: (kv_heads, capacity, head_dim) each.

    Views of a `KVArena` slot when one is free and big enough (then `slot` is set and the sequence
    can join batched decode attention), private tensors otherwise (very long sequences, the prefix
    cache's copies, more sequences than slots).
    """

    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        capacity: int,
        arena: KVArena | None = None,
    ):
        capacity = max(16, capacity)
        self.arena: KVArena | None = None
        self.slot: int | None = None
        if arena is not None and capacity <= arena.slot_tokens:
            self.slot = arena.take()
        if self.slot is not None:
            self.arena = arena
            self.keys = [k[self.slot] for k in arena.keys]
            self.values = [v[self.slot] for v in arena.values]
        else:
            self.keys = [torch.empty(kv_heads, capacity, head_dim, dtype=dtype) for _ in range(layers)]
            self.values = [torch.empty(kv_heads, capacity, head_dim, dtype=dtype) for _ in range(layers)]
        self.length = 0  # committed tokens

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[1]

    @property
    def nbytes(self) -> int:
        return 2 * sum(k.numel() * k.element_size() for k in self.keys)

    def bytes_per_token(self) -> int:
        k = self.keys[0]
        return 2 * len(self.keys) * k.shape[0] * k.shape[2] * k.element_size()

    def release(self) -> None:
        """Hand the arena slot back (the sequence finished); the buffers must not be used after."""
        if self.arena is not None and self.slot is not None:
            self.arena.give_back(self.slot)
        self.arena, self.slot = None, None
        self.keys, self.values = [], []

    def reserve(self, tokens: int) -> None:
        """Make room for `tokens` more tokens (doubling, so appends stay amortised O(1)); a slot
        that is outgrown is left for private buffers."""
        needed = self.length + tokens
        if needed <= self.capacity:
            return
        new_capacity = max(needed, 2 * self.capacity)
        for buffers in (self.keys, self.values):
            for i, old in enumerate(buffers):
                new = torch.empty(old.shape[0], new_capacity, old.shape[2], dtype=old.dtype)
                new[:, : self.length] = old[:, : self.length]
                buffers[i] = new
        if self.arena is not None and self.slot is not None:
            self.arena.give_back(self.slot)
        self.arena, self.slot = None, None

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys/values after the committed ones; return the layer's full view."""
        n = keys.shape[1]
        self.reserve(n)
        end = self.length + n
        self.keys[layer][:, self.length : end] = keys
        self.values[layer][:, self.length : end] = values
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def commit(self, tokens: int) -> None:
        self.length += tokens

    def copy_prefix_from(self, other: SequenceKV, tokens: int) -> None:
        self.reserve(tokens)
        for dst, src in zip(self.keys + self.values, other.keys + other.values, strict=True):
            dst[:, :tokens] = src[:, :tokens]
        self.length = tokens

    def trimmed(self) -> SequenceKV:
        """A private copy holding exactly the committed tokens (what the prefix cache keeps)."""
        copy = SequenceKV.__new__(SequenceKV)
        copy.keys = [k[:, : self.length].clone() for k in self.keys]
        copy.values = [v[:, : self.length].clone() for v in self.values]
        copy.length = self.length
        copy.arena, copy.slot = None, None
        return copy


def prefix_hashes(token_ids: Sequence[int], image_digests: Sequence[str | None]) -> list[bytes]:
    """h[i] identifies tokens[0..i] (inclusive) including the images behind image pads."""
    hashes = []
    h = b""
    for token, digest in zip(token_ids, image_digests, strict=True):
        step = hashlib.blake2b(h, digest_size=16)
        step.update(token.to_bytes(4, "little"))
        if digest is not None:
            step.update(digest.encode())
        h = step.digest()
        hashes.append(h)
    return hashes


@dataclass
class _Entry:
    kv: SequenceKV
    hashes: list[bytes]


@dataclass
class PrefixMatch:
    kv: SequenceKV
    tokens: int  # how many leading tokens of the request it covers


class PrefixCache:
    """LRU of finished sequences' KV, bounded in bytes, found by prefix hash."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._by_hash: dict[bytes, tuple[int, int]] = {}  # prefix hash -> (entry id, tokens)
        self._next_id = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, hashes: list[bytes], max_tokens: int) -> PrefixMatch | None:
        """Longest cached prefix of at most `max_tokens` tokens (at least one token must remain to
        be computed, so the caller gets logits for the last prompt position)."""
        with self._lock:
            for n in range(min(max_tokens, len(hashes)), 0, -1):
                found = self._by_hash.get(hashes[n - 1])
                if found is None:
                    continue
                entry_id, _ = found
                self._entries.move_to_end(entry_id)
                self.hits += 1
                self.reused_tokens += n
                return PrefixMatch(kv=self._entries[entry_id].kv, tokens=n)
            self.misses += 1
            return None

    def insert(self, kv: SequenceKV, hashes: list[bytes]) -> None:
        hashes = hashes[: kv.length]
        if not hashes:
            return
        trimmed = kv.trimmed()
        size = trimmed.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            existing = self._by_hash.get(hashes[-1])
            if existing is not None and existing[1] == len(hashes):
                self._entries.move_to_end(existing[0])  # already holds this exact sequence
                return
            entry_id = self._next_id
            self._next_id += 1
            self._entries[entry_id] = _Entry(trimmed, hashes)
            self._bytes += size
            for i, h in enumerate(hashes):
                self._by_hash[h] = (entry_id, i + 1)
            while self._bytes > self.max_bytes and self._entries:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self._bytes -= entry.kv.nbytes
        for h in entry.hashes:
            if self._by_hash.get(h, (None,))[0] == entry_id:
                del self._by_hash[h]
        # Prefixes this entry shared with older live entries now point nowhere; re-point them so a
        # shorter match can still be found.
        for other_id, other in self._entries.items():
            for i, h in enumerate(other.hashes):
                if h not in self._by_hash:
                    self._by_hash[h] = (other_id, i + 1)

    def stats(self) -> dict:
        return {
            "entries": len(self._entries),
            "mb": round(self._bytes / 2**20, 1),
            "max_mb": round(self.max_bytes / 2**20, 1),
            "hits": self.hits,
            "misses": self.misses,
            "reused_tokens": self.reused_tokens,
        }


class VisionCache:
    """Encoded image features by (image digest, pixel budget): a page asked about twice is encoded once."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def stats(self) -> dict:
        return {
            "entries": len(self._items),
            "mb": round(self._bytes / 2**20, 1),
            "max_mb": round(self.max_bytes / 2**20, 1),
            "hits": self.hits,
            "misses": self.misses,
        }

    def put(self, key: tuple, item, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._sizes[key] = nbytes
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                old, _ = self._items.popitem(last=False)
                self._bytes -= self._sizes.pop(old)
