"""Weight formats for the Qwen3-VL engine on CPU: fp32, bf16, int8, int4, w8a8.

Decode is bound by weight bytes read per token, the vision tower and prefill by FLOPs, so each
part of the model gets its own format (`quantize_qwen3vl`); `autotune` picks them by timing.

Like gpt-fast's quantize.py, this module changes the model by swapping modules, so the model code
never asks which format a layer is in: every nn.Linear becomes a layer of `linears` with the same
call interface (int8, int4, w8a8, or a bf16 Linear on the kernels' GEMV), and a converted vision
tower's blocks and MLPs become the forms of `vision_blocks` (the kernels' attention, row pieces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from vision.engine.contract import WEIGHT_FORMATS

from .linears import INT4_GROUP_SIZE as INT4_GROUP_SIZE  # autotune sizes int4 by it
from .linears import Bf16Linear, Int4Linear, Int8Linear, KeepFp32Linear, W8A8Linear

FORMATS: tuple[str, ...] = WEIGHT_FORMATS  # the grammar of the setting lives in the contract
# Formats whose error is below what sampling noise or bf16 accumulation already give; `auto`
# picks only among these. int4 (round-to-nearest, no GPTQ/AWQ) and w8a8 (activation outliers in
# real Qwen models) can change answers and must be asked for.
NEAR_LOSSLESS: tuple[str, ...] = ("fp32", "bf16", "int8")


def use_bf16_kernel(module: nn.Module) -> int:
    """Make every plain bf16 nn.Linear under `module` (itself included) a Bf16Linear sharing its
    parameters, where the kernels run it (AVX-512 BF16); returns how many. A no-op elsewhere."""
    from . import kernels

    if not kernels.bf16_ops_available():
        return 0
    if type(module) is nn.Linear and module.weight.dtype == torch.bfloat16:
        module.__class__ = Bf16Linear  # same parameters, same state dict: only forward changes
        return 1
    changed = 0
    for _, _, _, lin in _linears(module):
        if type(lin) is nn.Linear and lin.weight.dtype == torch.bfloat16:
            lin.__class__ = Bf16Linear
            changed += 1
    return changed


@dataclass
class FormatStats:
    layers: int = 0  # Linear layers now in this format
    bytes_before: int = 0  # their weight (+bias) bytes before conversion
    bytes_after: int = 0  # their weight + bias + scale bytes after


@dataclass
class QuantReport:
    # per format -> counts and bytes of the Linear layers converted to it ("fp32" for kept ones)
    formats: dict[str, FormatStats] = field(default_factory=dict)
    # non-Linear float params/buffers cast for bf16 (norms, embeddings, conv patch embed)
    other_params_cast: int = 0
    # True when a tied lm_head got its own quantized copy (embedding kept in its own format)
    untied_lm_head: bool = False

    @property
    def bytes_before(self) -> int:
        return sum(s.bytes_before for s in self.formats.values())

    @property
    def bytes_after(self) -> int:
        return sum(s.bytes_after for s in self.formats.values())

    def add(self, fmt: str, before: int, after: int) -> None:
        s = self.formats.setdefault(fmt, FormatStats())
        s.layers += 1
        s.bytes_before += before
        s.bytes_after += after

    def merge(self, other: QuantReport) -> QuantReport:
        out = QuantReport(
            other_params_cast=self.other_params_cast + other.other_params_cast,
            untied_lm_head=self.untied_lm_head or other.untied_lm_head,
        )
        for rep in (self, other):
            for fmt, s in rep.formats.items():
                t = out.formats.setdefault(fmt, FormatStats())
                t.layers += s.layers
                t.bytes_before += s.bytes_before
                t.bytes_after += s.bytes_after
        return out

    def summary(self) -> str:
        parts = [
            f"{fmt}: {s.layers} layers {s.bytes_before / 2**20:.1f}->{s.bytes_after / 2**20:.1f} MiB"
            for fmt, s in sorted(self.formats.items())
        ]
        if self.untied_lm_head:
            parts.append("lm_head untied")
        return "; ".join(parts)


def _tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def module_bytes(m: nn.Module) -> int:
    """Bytes of a (possibly quantized) linear layer's parameters and buffers."""
    return _tensor_bytes(*m.parameters(recurse=False), *m.buffers(recurse=False))


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def quantize_linear(lin: nn.Linear, fmt: str, *, int8_prefill_dtype: torch.dtype | None = None) -> nn.Module:
    """A replacement module for `lin` in `fmt` (int4 falls back to int8 for unsupported shapes)."""
    check_format(fmt)
    if fmt == "int8" or (fmt == "int4" and not Int4Linear.supports(lin)):
        return Int8Linear.from_linear(lin, int8_prefill_dtype)
    if fmt == "int4":
        return Int4Linear.from_linear(lin)
    if fmt == "w8a8":
        return W8A8Linear.from_linear(lin)
    raise ValueError(f"quantize_linear handles int8/int4/w8a8, not {fmt!r}")


def _linears(module: nn.Module) -> list[tuple[nn.Module, str, str, nn.Linear]]:
    """(parent, attribute, full name, linear) for every nn.Linear under `module`."""
    out = []
    for parent_name, parent in module.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                full = f"{parent_name}.{attr}" if parent_name else attr
                out.append((parent, attr, full, child))
    return out


def format_of_module(m: nn.Module) -> str:
    if isinstance(m, Int4Linear):
        return "int4"
    if isinstance(m, Int8Linear):
        return "int8"
    if isinstance(m, W8A8Linear):
        return "w8a8"
    return "bf16" if m.weight.dtype == torch.bfloat16 else "fp32"


@torch.no_grad()
def quantize_module(
    module: nn.Module,
    fmt: str,
    *,
    skip: Callable[[str, nn.Linear], bool] | None = None,
    int8_prefill_dtype: torch.dtype | None = None,
) -> QuantReport:
    """Convert every nn.Linear under `module` to `fmt` in place; `skip(name, linear)` exempts some.

    `int8_prefill_dtype`: see Int8Linear (from `FormatChoice.int8_prefill_dtype`; None = packed
    kernel for every call, correct and decode-optimal everywhere).

    - fp32: casts float params to fp32 (a no-op for a fp32 model).
    - bf16: casts every float param/buffer of `module` to bf16; skipped Linears stay fp32 and
      cast at their edges (KeepFp32Linear).
    - int8 / int4 / w8a8: replace Linears with packed modules; everything else (norms,
      embeddings, convs) keeps its dtype, and so do activations in and out of each layer.
    """
    check_format(fmt)
    report = QuantReport()
    entries = _linears(module)
    skipped = {full for _, _, full, lin in entries if skip is not None and skip(full, lin)}

    if fmt in ("fp32", "bf16"):
        target = torch.float32 if fmt == "fp32" else torch.bfloat16
        linear_ids = {id(p) for _, _, _, lin in entries for p in lin.parameters()}
        before = {full: module_bytes(lin) for _, _, full, lin in entries}
        seen: set[int] = set()
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.dtype != target and id(t) not in linear_ids and id(t) not in seen:
                seen.add(id(t))
                report.other_params_cast += 1
        module.to(target)
        for parent, attr, full, lin in entries:
            if full in skipped and fmt == "bf16":
                keep = KeepFp32Linear(lin.in_features, lin.out_features, lin.bias is not None, device="meta")
                keep.weight = nn.Parameter(lin.weight.float(), requires_grad=False)
                if lin.bias is not None:
                    keep.bias = nn.Parameter(lin.bias.float(), requires_grad=False)
                setattr(parent, attr, keep)
                lin = keep
            report.add(format_of_module(lin), before[full], module_bytes(lin))
        return report

    for parent, attr, full, lin in entries:
        before = module_bytes(lin)
        if full in skipped:
            report.add(format_of_module(lin), before, before)
            continue
        new = quantize_linear(lin, fmt, int8_prefill_dtype=int8_prefill_dtype)
        setattr(parent, attr, new)
        report.add(format_of_module(new), before, module_bytes(new))
    return report


def convert_vision_blocks(visual: nn.Module, fmt: str) -> int:
    """Give a converted vision tower's blocks the forms of `vision_blocks`: bf16 blocks attend on
    the kernels' attention; int8/int4 blocks also run their qkv and MLP (the kernels' GELU) in row
    pieces. The class of each module is swapped in place: same parameters, same state dict, only
    `forward` changes. fp32 and w8a8 towers keep transformers' blocks. Returns the blocks changed."""
    from .vision_blocks import KernelVisionBlock, QuantizedVisionBlock, QuantizedVisionMLP

    quantized = fmt in ("int8", "int4")
    if fmt != "bf16" and not quantized:
        return 0
    for block in visual.blocks:
        block.__class__ = QuantizedVisionBlock if quantized else KernelVisionBlock
        if quantized:
            block.mlp.__class__ = QuantizedVisionMLP
    return len(visual.blocks)


def _untie_config(config: object) -> None:
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and getattr(cfg, "tie_word_embeddings", False):
            cfg.tie_word_embeddings = False


@torch.no_grad()
def quantize_qwen3vl(
    model: nn.Module,
    lm_format: str,
    vision_format: str,
    *,
    int8_prefill_dtype: torch.dtype | None = None,
) -> QuantReport:
    """Apply `lm_format` to the language model + lm_head and `vision_format` to the vision tower.

    `model` is a Qwen3VLForConditionalGeneration: `model.model.language_model` (Qwen3VLTextModel),
    `model.model.visual` (Qwen3VLVisionModel, incl. its patch mergers) and `model.lm_head`.

    The lm_head matters: Qwen3-VL-2B ties it to the 151936x2048 embedding, 311M params, ~20% of
    the weight bytes read per decoded token. With a quantized LM format the lm_head gets its own
    quantized copy and the tie is dropped (config too, so a later `tie_weights()` does not undo
    it); the embedding table keeps the LM's float dtype, since a lookup reads one row per token
    and costs nothing to keep exact. With bf16 the tie is kept (both are simply bf16).
    """
    check_format(lm_format)
    check_format(vision_format)
    inner = model.model
    lm_head = model.lm_head
    embed = inner.language_model.get_input_embeddings()
    tied = embed is not None and lm_head.weight is embed.weight
    head_bytes_before = _tensor_bytes(lm_head.weight)

    report = quantize_module(inner.visual, vision_format, int8_prefill_dtype=int8_prefill_dtype)
    convert_vision_blocks(inner.visual, vision_format)
    report = report.merge(
        quantize_module(inner.language_model, lm_format, int8_prefill_dtype=int8_prefill_dtype)
    )
    if lm_format in ("fp32", "bf16"):
        # The embedding was cast with the language model; a tied lm_head shares that tensor.
        if not tied:
            report = report.merge(quantize_module(_Holder(lm_head), lm_format))
        else:
            # Same tensor as the embedding (already cast with the language model).
            report.add(lm_format, head_bytes_before, _tensor_bytes(lm_head.weight))
        if lm_format == "bf16":  # decode's few-row calls on the kernels' bf16 GEMV
            use_bf16_kernel(inner.language_model)
            use_bf16_kernel(model.lm_head)
        return report

    if tied:
        # Quantize from the embedding's (still float) weight into fresh buffers: this unties.
        src = nn.Linear(lm_head.in_features, lm_head.out_features, bias=False, device="meta")
        src.weight = nn.Parameter(embed.weight.detach(), requires_grad=False)
        lm_head = src
        _untie_config(model.config)
        report.untied_lm_head = True
    new = quantize_linear(lm_head, lm_format, int8_prefill_dtype=int8_prefill_dtype)
    model.lm_head = new
    report.add(format_of_module(new), head_bytes_before, module_bytes(new))
    return report


class _Holder(nn.Module):
    """Wraps one Linear so quantize_module can replace/cast it like any child."""

    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin
