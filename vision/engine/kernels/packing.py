"""The kernels' weight layouts: int8 and int4 weights repacked once at load into panels of 16
output columns (the operand of one `vpdpbusd`, csrc/vk.h), and their inverses for tests and
dequantization. Plain torch tensor code, no compiled module needed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLOCK = 32  # activation quantization block along K (csrc/vk.h kBlock)
PANEL = 16  # output columns per packed panel (csrc/vk.h kPanel)


def pack_int8(qweight: torch.Tensor) -> torch.Tensor:
    """(N, K) int8 -> (ceil(N/16), Kp*16) uint8 panels: [panel][k/4][16 columns][4 k], +128.

    Kp = K rounded up to the 32-block; padded weights are 0 (128 stored), so they add nothing.
    """
    n, k = qweight.shape
    np_, kp = -(-n // PANEL) * PANEL, -(-k // BLOCK) * BLOCK
    w = qweight
    if (np_, kp) != (n, k):  # pad (a copy) only when needed: the lm_head alone is 311 MB
        w = torch.zeros(np_, kp, dtype=torch.int8)
        w[:n, :k] = qweight
    packed = w.view(np_ // PANEL, PANEL, kp // 4, 4).permute(0, 2, 1, 3).contiguous().view(torch.uint8)
    packed ^= 128  # in place: the one copy is the permuted layout
    return packed.view(np_ // PANEL, kp * PANEL)


def unpack_int8(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of pack_int8."""
    panels = packed.shape[0]
    kp = packed.shape[1] // PANEL
    w = (packed ^ 128).view(torch.int8).view(panels, kp // 4, PANEL, 4).permute(0, 2, 1, 3)
    return w.reshape(panels * PANEL, kp)[:n, :k].contiguous()


def pad_to_panels(v: torch.Tensor, n: int) -> torch.Tensor:
    """A per-column vector as fp32, zero padded to whole panels (the kernel reads whole panels)."""
    out = torch.zeros(-(-n // PANEL) * PANEL, dtype=torch.float32)
    out[:n] = v.float()
    return out


def quantize_int4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 4-bit round-to-nearest per block of 32 along K, as llama.cpp's Q4_0.

    Returns (q (N, Kp) int8 in [-8, 7], scales (N, Kp/32) fp32), w ~ q * scale; Kp = K rounded up
    to 32 (padding is 0). The scale is the block's signed extreme / -8, so that value maps to -8
    exactly and all 16 levels are used (amax/7 would waste one and make the step 8/7 coarser).
    """
    w = w.detach().float()
    n, k = w.shape
    kp = -(-k // BLOCK) * BLOCK
    if kp != k:
        w = F.pad(w, (0, kp - k))
    wb = w.view(n, kp // BLOCK, BLOCK)
    idx = wb.abs().argmax(-1, keepdim=True)
    scale = wb.gather(-1, idx) / -8.0  # (N, nblk, 1), may be negative
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.round(wb / safe).clamp_(-8, 7).to(torch.int8)
    q = torch.where(scale == 0, torch.zeros_like(q), q)
    return q.view(n, kp), scale.view(n, kp // BLOCK)


BLOCK_BYTES4 = 320  # per panel per block: 256 bytes of nibbles + 16 fp32 scales (csrc/vk.h)


def pack_int4(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, Kp) int8 in [-8, 7] and (N, Kp/32) fp32 -> (ceil(N/16), Kp/32 * 320) uint8 (csrc/vk.h).

    Per panel and block of 32: 4 pairs x 16 columns x 4 k bytes, byte (p, c, t) holding q + 8 of
    k = 4p + t in its low nibble and of k = 16 + 4p + t in its high nibble; then the block's 16
    column scales. Padding columns have q = 0 and scale 0.
    """
    n, kp = q.shape
    assert kp % BLOCK == 0 and scales.shape == (n, kp // BLOCK), "quantize_int4 pads K to whole blocks"
    np_, nblk = -(-n // PANEL) * PANEL, kp // BLOCK
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    s = scales.float()
    if np_ != n:
        u = torch.cat([u, torch.full((np_ - n, kp), 8, dtype=torch.uint8)])
        s = torch.cat([s, torch.zeros(np_ - n, nblk)])
    # k within a block = 16 * half + 4 * pair + t
    u = u.view(np_ // PANEL, PANEL, nblk, 2, 4, 4).permute(0, 2, 3, 4, 1, 5)  # (P, b, half, p, c, t)
    nibbles = (u[:, :, 0] | (u[:, :, 1] << 4)).reshape(np_ // PANEL, nblk, 256)
    sb = s.view(np_ // PANEL, PANEL, nblk).permute(0, 2, 1).contiguous().view(torch.uint8)  # (P, b, 64)
    return torch.cat([nibbles, sb], dim=-1).view(np_ // PANEL, nblk * BLOCK_BYTES4)


def unpack_int4(packed: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of pack_int4: (q (N, Kp) int8, scales (N, Kp/32) fp32)."""
    panels = packed.shape[0]
    nblk = packed.shape[1] // BLOCK_BYTES4
    blocks = packed.view(panels, nblk, BLOCK_BYTES4)
    b = blocks[:, :, :256].reshape(panels, nblk, 4, PANEL, 4)
    u = torch.stack([b & 15, b >> 4], dim=2)  # (P, b, half, p, c, t)
    q = u.permute(0, 4, 1, 2, 3, 5).reshape(panels * PANEL, nblk * BLOCK).to(torch.int8) - 8
    s = blocks[:, :, 256:].contiguous().view(torch.float32).view(panels, nblk, PANEL).permute(0, 2, 1)
    return q[:n].contiguous(), s.reshape(panels * PANEL, nblk)[:n].contiguous()
