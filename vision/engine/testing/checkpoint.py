"""Random-weight Qwen3-VL checkpoints that load through the same code as the real one.

No machine here reaches the Hugging Face hub, so tests and benchmarks use checkpoints written
by this module: the file layout of `Qwen/Qwen3-VL-2B-Instruct` (config.json in the hub's
format, safetensors weights, Qwen2 byte-level BPE tokenizer with Qwen's special tokens, the
Qwen3-VL ChatML chat template, image and video preprocessor configs), random weights inside.

    python -m vision.engine.testing.checkpoint --size tiny OUT_DIR      # a few MB, about a second
    python -m vision.engine.testing.checkpoint --size 2b OUT_DIR        # real 2B dimensions, ~4.3 GB bf16

The tokenizer is trained at write time on `vision.engine.testing.corpus` (English, Simplified Chinese,
numbers, JSON), so its ids differ from the real Qwen tokenizer's; config.json carries the ids
this tokenizer really has. Output is byte-for-byte reproducible for a given size, seed and dtype.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from vision.engine.testing.tokenizer import (
    CHAT_TEMPLATE,
    TokenIds,
    token_ids,
    train_tokenizer,
    write_json,
    write_tokenizer,
)

# Part of the fixture cache key: bump it whenever the files this module writes change.
WRITER_VERSION = "1"

CheckpointSize = Literal["tiny", "2b"]
SIZES: tuple[CheckpointSize, ...] = ("tiny", "2b")
# preprocessor_config.json / video_preprocessor_config.json of Qwen3-VL-2B-Instruct.
# size is a pixel budget, not edges: shortest_edge = min_pixels (256x256), longest_edge =
# max_pixels (16.7 MP for images; 24 MP over all frames for video).
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
IMAGE_MIN_PIXELS = 65536
IMAGE_MAX_PIXELS = 16777216
VIDEO_MIN_PIXELS = 4096
VIDEO_MAX_PIXELS = 25165824

# Real 2B model-card values; the tiny model keeps the architecture quirks (GQA, QK-norm,
# interleaved M-RoPE, DeepStack, tied embeddings, patch 16 / merge 2 / temporal 2) at toy widths.
TEXT_DIMS: dict[CheckpointSize, dict[str, Any]] = {
    "2b": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 262144,
        "mrope_section": [24, 20, 20],
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": None,  # the trained tokenizer's size, rounded up to a multiple of 64
        "max_position_embeddings": 262144,
        "mrope_section": [4, 2, 2],  # sums to head_dim / 2, like [24, 20, 20] for 128
    },
}
VISION_DIMS: dict[CheckpointSize, dict[str, Any]] = {
    "2b": {
        "depth": 24,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "num_position_embeddings": 2304,  # 48 x 48 learned grid, bilinearly resampled
        "deepstack_visual_indexes": [5, 11, 17],
    },
    "tiny": {
        "depth": 3,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,  # must be a perfect square (8 x 8 grid)
        "deepstack_visual_indexes": [0, 1],
    },
}
DEFAULT_DTYPE: dict[CheckpointSize, torch.dtype] = {"2b": torch.bfloat16, "tiny": torch.float32}
# Shard size for the 2b weights: bounds the writer's peak memory to about one shard.
SHARD_BYTES = 2 * 1024**3
INIT_STD = 0.02  # the configs' initializer_range
# Tokens before Qwen's added ones: the released tokenizer has 151643; the tiny model keeps
# only what the corpus trains (~730) so its embedding stays small.
REGULAR_TOKENS: dict[CheckpointSize, int | None] = {"2b": 151643, "tiny": None}


def model_config(size: CheckpointSize, ids: TokenIds, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json as the hub ships it (transformers 4.57 layout: rope_scaling + rope_theta)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    text = dict(TEXT_DIMS[size])
    vision = dict(VISION_DIMS[size])
    dtype_name = str(dtype or DEFAULT_DTYPE[size]).removeprefix("torch.")
    vocab_size = text.pop("vocab_size") or 64 * math.ceil(ids.size / 64)
    if vocab_size < ids.size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({ids.size} tokens)")
    mrope_section = text.pop("mrope_section")
    if sum(mrope_section) * 2 != text["head_dim"]:
        raise ValueError("mrope_section must sum to head_dim / 2")
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": ids.image_pad,
        "model_type": "qwen3_vl",
        "text_config": {
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": ids.endoftext,
            "dtype": dtype_name,
            "eos_token_id": ids.im_end,
            "head_dim": text["head_dim"],
            "hidden_act": "silu",
            "hidden_size": text["hidden_size"],
            "initializer_range": INIT_STD,
            "intermediate_size": text["intermediate_size"],
            "max_position_embeddings": text["max_position_embeddings"],
            "model_type": "qwen3_vl_text",
            "num_attention_heads": text["num_attention_heads"],
            "num_hidden_layers": text["num_hidden_layers"],
            "num_key_value_heads": text["num_key_value_heads"],
            "rms_norm_eps": 1e-06,
            "rope_scaling": {
                "mrope_interleaved": True,
                "mrope_section": mrope_section,
                "rope_type": "default",
            },
            "rope_theta": 5000000,
            "tie_word_embeddings": True,
            "use_cache": True,
            "vocab_size": vocab_size,
        },
        "tie_word_embeddings": True,
        "transformers_version": "4.57.0.dev0",
        "video_token_id": ids.video_pad,
        "vision_config": {
            "deepstack_visual_indexes": vision["deepstack_visual_indexes"],
            "depth": vision["depth"],
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": vision["hidden_size"],
            "in_channels": 3,
            "initializer_range": INIT_STD,
            "intermediate_size": vision["intermediate_size"],
            # The released config says "qwen3_vl" here; transformers maps it to qwen3_vl_vision.
            "model_type": "qwen3_vl",
            "num_heads": vision["num_heads"],
            "num_position_embeddings": vision["num_position_embeddings"],
            "out_hidden_size": vision["out_hidden_size"],
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        },
        "vision_end_token_id": ids.vision_end,
        "vision_start_token_id": ids.vision_start,
    }


def _preprocessor_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    common = {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor",
    }
    image = {
        "size": {"longest_edge": IMAGE_MAX_PIXELS, "shortest_edge": IMAGE_MIN_PIXELS},
        **common,
        # As released. Without torchvision, transformers 5 resolves this name to the PIL/numpy
        # backend (Qwen2VLImageProcessorPil), so a real checkpoint and ours load the same way.
        "image_processor_type": "Qwen2VLImageProcessorFast",
    }
    video = {
        "size": {"longest_edge": VIDEO_MAX_PIXELS, "shortest_edge": VIDEO_MIN_PIXELS},
        **common,
        "video_processor_type": "Qwen3VLVideoProcessor",
    }
    return image, video


def generation_config(ids: TokenIds) -> dict[str, Any]:
    """generation_config.json: the released sampling defaults, with this tokenizer's ids."""
    return {
        "bos_token_id": ids.endoftext,
        "pad_token_id": ids.endoftext,
        "do_sample": True,
        "eos_token_id": [ids.im_end, ids.endoftext],
        "top_k": 20,
        "top_p": 0.8,
        "repetition_penalty": 1.0,
        "temperature": 0.7,
        "transformers_version": "4.57.0.dev0",
    }


def _tensor_seed(seed: int, name: str) -> int:
    # Per-tensor seed from the name, so a tensor's values do not depend on iteration order.
    return (seed * 0x9E3779B1 + zlib.crc32(name.encode())) % (2**63)


def _random_tensor(name: str, shape: torch.Size, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Cheap deterministic init: norms 1, biases 0, everything else N(0, 0.02)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "bias":
        return torch.zeros(shape, dtype=dtype)
    if len(shape) == 1 and "norm" in name:
        return torch.ones(shape, dtype=dtype)
    generator = torch.Generator().manual_seed(_tensor_seed(seed, name))
    values = torch.empty(shape, dtype=torch.float32).normal_(0.0, INIT_STD, generator=generator)
    return values.to(dtype)


def _parameter_shapes(config: dict[str, Any]) -> dict[str, torch.Size]:
    """Checkpoint tensor names and shapes, from the real model class built on the meta device
    (no memory, no init time). Tied lm_head is left out, as in the released checkpoint."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    hf_config = Qwen3VLConfig.from_dict(config)
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(hf_config)
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    if config["tie_word_embeddings"]:
        shapes.pop("lm_head.weight", None)
    return shapes


def _write_weights(out: Path, shapes: dict[str, torch.Size], dtype: torch.dtype, seed: int) -> int:
    """Stream tensors into safetensors shards of at most SHARD_BYTES; returns total bytes."""
    element = torch.empty((), dtype=dtype).element_size()
    shards: list[list[str]] = [[]]
    shard_bytes = 0
    for name in sorted(shapes):
        nbytes = math.prod(shapes[name]) * element
        if shards[-1] and shard_bytes + nbytes > SHARD_BYTES:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(name)
        shard_bytes += nbytes
    total = sum(math.prod(s) * element for s in shapes.values())
    metadata = {"format": "pt"}
    if len(shards) == 1:
        tensors = {name: _random_tensor(name, shapes[name], dtype, seed) for name in shards[0]}
        save_file(tensors, str(out / "model.safetensors"), metadata=metadata)
        return total
    weight_map: dict[str, str] = {}
    for index, names in enumerate(shards, start=1):
        filename = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: _random_tensor(name, shapes[name], dtype, seed) for name in names}
        save_file(tensors, str(out / filename), metadata=metadata)
        del tensors
        weight_map.update(dict.fromkeys(names, filename))
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    write_json(out / "model.safetensors.index.json", index_doc)
    return total


def write_checkpoint(
    out_dir: str | Path,
    size: CheckpointSize = "tiny",
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a random-weight Qwen3-VL checkpoint to `out_dir` and return its path.

    The folder is built under a temporary name and renamed into place, so a crash never leaves
    a half-written checkpoint that looks complete. An existing `out_dir` is replaced.
    `dtype` defaults to float32 for tiny and bfloat16 (the released dtype) for 2b.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    dtype = dtype or DEFAULT_DTYPE[size]
    out = Path(out_dir)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    tokenizer = train_tokenizer(REGULAR_TOKENS[size])
    ids = token_ids(tokenizer)
    config = model_config(size, ids, dtype)
    image_config, video_config = _preprocessor_configs()

    write_json(staging / "config.json", config)
    write_json(staging / "generation_config.json", generation_config(ids))
    write_tokenizer(staging, tokenizer)
    write_json(staging / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_json(staging / "preprocessor_config.json", image_config)
    write_json(staging / "video_preprocessor_config.json", video_config)
    _write_weights(staging, _parameter_shapes(config), dtype, seed)

    for weights in staging.glob("*.safetensors"):
        weights.chmod(0o644)  # safetensors creates 0600 files; workers may run as another user
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vision.engine.testing.checkpoint",
        description="Write a random-weight Qwen3-VL checkpoint (real file layout, random weights).",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype", choices=sorted(_DTYPES), default=None, help="default: tiny float32, 2b bfloat16"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    dtype = _DTYPES[args.dtype] if args.dtype else None
    out = write_checkpoint(args.out_dir, size=args.size, seed=args.seed, dtype=dtype)
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(
        f"wrote {args.size} checkpoint to {out}: {total / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
