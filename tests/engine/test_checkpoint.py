"""The random-weight checkpoint writer: files, tokenizer, chat template, and that the real
transformers classes load and run what it writes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from vision.engine.pretrained import load_processor
from vision.engine.testing.checkpoint import _parameter_shapes, model_config, write_checkpoint
from vision.engine.testing.tokenizer import QWEN_ADDED_TOKENS, token_ids, train_tokenizer

EXPECTED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _image(width: int, height: int) -> Image.Image:
    """A non-uniform RGB image so resizing and normalisation have something to do."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(height) for x in range(width)]
    )
    return image


def test_tiny_checkpoint_writes_in_seconds_and_is_small(tmp_path: Path) -> None:
    """GIVEN the tiny size WHEN written THEN all hub files exist, in a few MB and seconds."""
    started = time.perf_counter()
    out = write_checkpoint(tmp_path / "tiny", size="tiny", seed=0)
    elapsed = time.perf_counter() - started

    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert sum(p.stat().st_size for p in out.iterdir()) < 10_000_000
    assert elapsed < 30  # ~1 s warm; generous for a loaded CI box
    assert not (tmp_path / "tiny.partial").exists()


def test_output_is_reproducible_per_seed(tmp_path: Path) -> None:
    """Same seed → byte-identical files; another seed → other weights, same tokenizer."""
    first = _digests(write_checkpoint(tmp_path / "a", seed=0))
    second = _digests(write_checkpoint(tmp_path / "b", seed=0))
    other = _digests(write_checkpoint(tmp_path / "c", seed=1))

    assert first == second
    assert other["model.safetensors"] != first["model.safetensors"]
    assert other["tokenizer.json"] == first["tokenizer.json"]


def test_config_ids_match_the_tokenizer(tiny_checkpoint: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    generation = json.loads((tiny_checkpoint / "generation_config.json").read_text())

    assert isinstance(config, Qwen3VLConfig)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert config.text_config.eos_token_id == tokenizer.eos_token_id
    assert generation["eos_token_id"] == [tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert generation["pad_token_id"] == tokenizer.pad_token_id
    assert len(tokenizer) <= config.text_config.vocab_size


def test_special_tokens_are_single_tokens_in_qwen_order(tiny_checkpoint: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = [tokenizer.convert_tokens_to_ids(text) for text, _ in QWEN_ADDED_TOKENS]

    assert ids == list(range(ids[0], ids[0] + len(QWEN_ADDED_TOKENS)))  # contiguous, like 151643..
    encoded = tokenizer("a<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>b")["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") in encoded
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in encoded
    # skip_special_tokens drops the control tokens but keeps text
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "auser\nb"


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "请阅读附件中的发票，提取供应商名称。",
        "发票号码 INV-2024-00042，总金额 ¥3,500.00",
        '{"vendor": "ACME", "total": 1234.56}',
        "emoji 🙂 and ümlauts, tabs\tand\nnewlines  ",
        "从未见过的汉字：龘靐齉",
    ],
)
def test_text_round_trips(tiny_checkpoint: Path, text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_tokenizer_learned_words_not_just_bytes() -> None:
    tokenizer = train_tokenizer()
    sentence = "Please extract the invoice number and the total amount."
    chinese = "请提取发票号码和总金额。"

    assert tokenizer.encode(" invoice").tokens == ["Ġinvoice"]
    assert len(tokenizer.encode(sentence).ids) < len(sentence) / 3
    assert len(tokenizer.encode(chinese).ids) < len(chinese.encode()) / 2


def test_chat_template_renders_qwen_chatml(tiny_checkpoint: Path) -> None:
    processor = load_processor(tiny_checkpoint)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "What is this?"},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And the colour?"},
    ]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
        "<|im_start|>assistant\nA cat.<|im_end|>\n"
        "<|im_start|>user\nAnd the colour?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without_prompt = processor.apply_chat_template(messages[3:], add_generation_prompt=False, tokenize=False)
    assert without_prompt == "<|im_start|>user\nAnd the colour?<|im_end|>\n"


@pytest.mark.parametrize(
    ("width", "height", "grid_h", "grid_w"),
    [
        (640, 480, 30, 40),  # multiples of 32: kept as is
        (500, 333, 20, 32),  # rounded to multiples of 32: 320 x 512
        (100, 60, 14, 22),  # below min_pixels (256x256): scaled up to 224 x 352
    ],
)
def test_processor_expands_image_pads(
    tiny_checkpoint: Path, width: int, height: int, grid_h: int, grid_w: int
) -> None:
    """GIVEN an image in a chat WHEN the processor builds inputs THEN <|image_pad|> is
    repeated (h/16)*(w/16)/4 times for the resized image and pixel_values hold its patches."""
    processor = load_processor(tiny_checkpoint)
    config = AutoConfig.from_pretrained(tiny_checkpoint)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": _image(width, height)}, {"type": "text", "text": "Hi"}],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )

    assert inputs["image_grid_thw"].tolist() == [[1, grid_h, grid_w]]
    pads = int((inputs["input_ids"] == config.image_token_id).sum())
    assert pads == grid_h * grid_w // 4
    # one row per 16x16 patch: 3 channels x temporal 2 x 16 x 16 values
    assert tuple(inputs["pixel_values"].shape) == (grid_h * grid_w, 3 * 2 * 16 * 16)
    assert inputs["mm_token_type_ids"].sum() == pads  # 1 marks image tokens for M-RoPE


def test_model_loads_and_generates(tiny_checkpoint: Path) -> None:
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    processor = load_processor(tiny_checkpoint)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image(64, 64)},
                {"type": "text", "text": "请描述这张图片。"},
            ],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)

    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()


def test_image_processor_resolves_to_pil_backend(tiny_checkpoint: Path) -> None:
    """The file names the released fast class; without torchvision it must fall back to PIL."""
    from transformers.utils import is_torchvision_available

    image_processor = AutoImageProcessor.from_pretrained(tiny_checkpoint)
    if not is_torchvision_available():
        assert type(image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert image_processor.patch_size == 16
    assert image_processor.merge_size == 2
    assert image_processor.temporal_patch_size == 2
    assert list(image_processor.image_mean) == [0.5, 0.5, 0.5]
    assert image_processor.size == {"shortest_edge": 65536, "longest_edge": 16777216}


def test_2b_config_matches_published_qwen3_vl_2b_instruct() -> None:
    """The 2b config carries the dims of Qwen/Qwen3-VL-2B-Instruct's config.json (checked
    against the released file), built without writing 2 B weights."""
    config = model_config("2b", token_ids(train_tokenizer()))
    text, vision = config["text_config"], config["vision_config"]

    assert {k: text[k] for k in _PUBLISHED_TEXT} == _PUBLISHED_TEXT
    assert {k: vision[k] for k in _PUBLISHED_VISION} == _PUBLISHED_VISION
    assert config["tie_word_embeddings"] is True
    assert text["dtype"] == "bfloat16"

    parsed = Qwen3VLConfig.from_dict(config)
    assert parsed.text_config.rope_parameters["rope_theta"] == 5_000_000
    assert parsed.text_config.rope_parameters["mrope_section"] == [24, 20, 20]
    assert parsed.text_config.rope_parameters["mrope_interleaved"] is True
    parameters = sum(torch.Size(shape).numel() for shape in _parameter_shapes(config).values())
    assert parameters == 2_127_532_032  # tied embeddings counted once; 4.26 GB in bf16


_PUBLISHED_TEXT = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-06,
    "rope_theta": 5000000,
    "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "attention_bias": False,
}
_PUBLISHED_VISION = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "out_hidden_size": 2048,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
    "hidden_act": "gelu_pytorch_tanh",
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "in_channels": 3,
}
