"""Load Qwen3-VL (model, processor, tokenizer) from a local folder or a hub id.

The only place the engine calls `from_pretrained`. Failures a user can fix (a wrong path, a
half-copied folder, no network to the hub) become `ModelLoadError`s whose message says what to
do, instead of a transformers stack trace on the readiness endpoint.

Without torchvision (not installed here: it pulls a CUDA-sized wheel) `AutoProcessor` cannot
load any Qwen3-VL checkpoint in transformers 5.24, the released one included: it always loads
the video processor, and `Qwen3VLVideoProcessor` requires torchvision. We therefore load the
processor through `Qwen3VLImageTextProcessor`, the stock `Qwen3VLProcessor` minus its video
processor. The image processor resolves to the PIL/numpy backend (`Qwen2VLImageProcessorPil`)
on its own when torchvision is absent, also for the released file that names the fast class.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
from transformers.utils import logging as hf_logging

from .contract import SamplingDefaults
from .errors import IncompleteCheckpoint, ModelLoadError, ModelNotFound

logger = logging.getLogger(__name__)

# "owner/name" as the hub spells repository ids; anything else is treated as a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What a hub download fetches: configs, tokenizer, template, weights (not README or images).
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja"]
_CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class Qwen3VLImageTextProcessor(Qwen3VLProcessor):
    """`Qwen3VLProcessor` without the video processor, so it loads without torchvision.

    Identical for text and images (same tokenizer, image processor, chat template, pad
    expansion and `mm_token_type_ids`); videos are not supported.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # ProcessorMixin derives the sub-processors it loads from this signature: leaving
        # video_processor out of it is what keeps `from_pretrained` away from torchvision.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


@dataclass
class LoadedModel:
    """A loaded checkpoint and the facts about it the engine needs."""

    model: Qwen3VLForConditionalGeneration  # eval mode, on CPU
    processor: Qwen3VLProcessor  # chat template + image processor + tokenizer (no video)
    tokenizer: Any  # Qwen2Tokenizer; also `processor.tokenizer`
    config: Qwen3VLConfig
    source: Path  # local folder the files were read from (hub snapshot or given folder)
    dtype: torch.dtype  # dtype of the weights in memory
    eos_token_ids: tuple[int, ...]  # any of these ends a turn (<|im_end|>, <|endoftext|>)
    pad_token_id: int  # <|endoftext|>, for batching
    image_token_id: int  # <|image_pad|>: one per merged 2x2 patch group
    video_token_id: int  # <|video_pad|>
    vision_start_token_id: int  # <|vision_start|> before each image's pads
    vision_end_token_id: int  # <|vision_end|> after them
    num_parameters: int  # tied embeddings counted once
    weight_bytes: int  # bytes of parameters in memory, what decode reads per token
    load_seconds: float  # wall time of load_model, download included
    # generation_config.json's sampling values: what a request that sets none gets (engine side)
    sampling_defaults: SamplingDefaults = field(default_factory=SamplingDefaults)
    # Set by startup.load_for_engine: the `auto` measurement (autotune.FormatChoice) and the
    # activation dtype it chose for a quantized language model (None: the runner's default).
    format_choice: Any = None
    activation_dtype: torch.dtype | None = None


def is_hub_id(model: str) -> bool:
    """True when `model` reads as a hub repository id and no such local folder exists."""
    return bool(_HUB_ID.match(model)) and not Path(model).expanduser().exists()


def missing_files(folder: Path) -> list[str]:
    """Files a Qwen3-VL checkpoint needs that `folder` lacks (empty when complete).

    Weights may be one `model.safetensors` or shards listed by `model.safetensors.index.json`;
    every listed shard must exist (an interrupted copy is the common failure).
    """
    missing: list[str] = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise IncompleteCheckpoint(str(folder), [f"a valid {index.name} ({exc})"]) from exc
        missing.extend(shard for shard in shards if not (folder / shard).is_file())
    elif not (folder / "model.safetensors").is_file():
        missing.append("model.safetensors (or model.safetensors.index.json with its shards)")
    has_tokenizer = (folder / "tokenizer.json").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    )
    if not has_tokenizer:
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if not (folder / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not (folder / "preprocessor_config.json").is_file():
        missing.append("preprocessor_config.json")
    if not any((folder / name).is_file() for name in _CHAT_TEMPLATE_FILES) and not _has_tokenizer_template(
        folder
    ):
        missing.append("chat_template.json (or chat_template.jinja)")
    return missing


def _has_tokenizer_template(folder: Path) -> bool:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("chat_template"))
    except ValueError:
        return False


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Turn transformers' and huggingface_hub's tqdm bars off for the block when asked."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hf_was_disabled = are_progress_bars_disabled()
    tf_was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled:
        disable_progress_bars()
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not enabled:
            if not hf_was_disabled:
                enable_progress_bars()
            if tf_was_enabled:
                hf_logging.enable_progress_bar()


def _download(repo_id: str) -> Path:
    """Fetch a hub snapshot (or reuse the cached one) with huggingface_hub's progress bars."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    advice = (
        f"Download {repo_id} on a machine that can reach huggingface.co (e.g. `hf download {repo_id} "
        f"--local-dir /models/{repo_id.split('/')[-1]}`), copy the folder here and set VISION_MODEL "
        "to that folder."
    )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ModelNotFound(
            f"{repo_id} is not an accessible model on the Hugging Face hub. {advice}"
        ) from exc
    except OSError as exc:
        # Name resolution, refused connections and "not in the local cache" all land here
        # (huggingface_hub's offline errors subclass OSError).
        raise ModelNotFound(
            f"could not download {repo_id}: the Hugging Face hub is unreachable "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). {advice}"
        ) from exc


def resolve_model_path(model: str, *, progress: bool = True) -> Path:
    """The local folder holding `model` (a folder path or a hub id), checked for completeness.

    Raises `ModelNotFound` for a missing folder or an unreachable / unknown hub id and
    `IncompleteCheckpoint` naming the files a folder lacks.
    """
    if is_hub_id(model):
        with _progress_bars(progress):
            folder = _download(model)
    else:
        folder = Path(model).expanduser()
        if not folder.exists():
            raise ModelNotFound(
                f"model folder {folder} does not exist. Set VISION_MODEL to a folder holding a "
                "Qwen3-VL checkpoint (config.json, *.safetensors, tokenizer and preprocessor files) "
                "or to a hub id such as Qwen/Qwen3-VL-2B-Instruct."
            )
        if not folder.is_dir():
            raise ModelNotFound(f"model path {folder} is a file; VISION_MODEL must name a folder or a hub id")
    missing = missing_files(folder)
    if missing:
        raise IncompleteCheckpoint(str(folder), missing)
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != "qwen3_vl":
        raise ModelLoadError(
            f"{folder} holds a {model_type!r} model; the engine runs Qwen3-VL (qwen3_vl) only"
        )
    return folder


def load_processor(folder: str | Path) -> Qwen3VLProcessor:
    """The Qwen3-VL processor of a checkpoint folder, without torchvision (see module docstring)."""
    return Qwen3VLImageTextProcessor.from_pretrained(str(folder))


def _eos_ids(model: Qwen3VLForConditionalGeneration, tokenizer: Any) -> tuple[int, ...]:
    ids: list[int] = []
    configured = model.generation_config.eos_token_id
    for value in [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]:
        if value is not None and value not in ids:
            ids.append(int(value))
    return tuple(ids)


def sampling_defaults(folder: Path) -> SamplingDefaults:
    """The checkpoint's own sampling defaults, read from generation_config.json.

    Read from the file, not from `model.generation_config`: transformers fills a missing file with
    its library defaults (top_k 50), which the checkpoint never asked for. vLLM reads it the same
    way. No file, or an unreadable one: greedy.
    """
    path = folder / "generation_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SamplingDefaults()
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return SamplingDefaults()
    return SamplingDefaults.from_dict(data) if isinstance(data, dict) else SamplingDefaults()


def load_model(
    model: str,
    *,
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load a Qwen3-VL checkpoint for CPU inference.

    `model` is a local folder or a hub id (downloaded with a progress bar, then read from the
    local snapshot). `dtype` is the in-memory dtype of the weights (the released checkpoint is
    bf16; fp32 is the safe default on CPUs without fast bf16). `threads`, when given, sets
    torch's intra-op thread count; None leaves it as the caller configured it.
    """
    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    folder = resolve_model_path(model, progress=progress)
    try:
        processor = load_processor(folder)
        with _progress_bars(progress):
            network = Qwen3VLForConditionalGeneration.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        # Corrupt or mismatched files (truncated safetensors, wrong shapes, bad JSON).
        raise ModelLoadError(
            f"could not load the checkpoint in {folder}: {type(exc).__name__}: {exc}"
        ) from exc
    network.eval()
    network.requires_grad_(False)
    config = network.config
    tokenizer = processor.tokenizer
    parameters = list(network.parameters())  # tied lm_head/embeddings appear once
    loaded = LoadedModel(
        model=network,
        processor=processor,
        tokenizer=tokenizer,
        config=config,
        source=folder,
        dtype=dtype,
        eos_token_ids=_eos_ids(network, tokenizer),
        pad_token_id=int(tokenizer.pad_token_id),
        image_token_id=int(config.image_token_id),
        video_token_id=int(config.video_token_id),
        vision_start_token_id=int(config.vision_start_token_id),
        vision_end_token_id=int(config.vision_end_token_id),
        num_parameters=sum(p.numel() for p in parameters),
        weight_bytes=sum(p.numel() * p.element_size() for p in parameters),
        load_seconds=time.perf_counter() - started,
        sampling_defaults=sampling_defaults(folder),
    )
    logger.info(
        "loaded %s from %s: %.2f B parameters, %.0f MB %s, %.1f s",
        model,
        folder,
        loaded.num_parameters / 1e9,
        loaded.weight_bytes / 1e6,
        str(dtype).removeprefix("torch."),
        loaded.load_seconds,
    )
    return loaded
