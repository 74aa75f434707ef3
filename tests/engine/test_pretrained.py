"""`load_model`: what a loaded checkpoint reports, and the errors a user can act on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import huggingface_hub
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

from vision.engine.errors import IncompleteCheckpoint, ModelLoadError, ModelNotFound
from vision.engine.pretrained import LoadedModel, is_hub_id, load_model, missing_files


@pytest.fixture
def checkpoint_copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny checkpoint, for tests that break it."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def test_loads_tiny_checkpoint_with_its_facts(tiny_model: LoadedModel, tiny_checkpoint: Path) -> None:
    loaded = tiny_model
    tokenizer = loaded.tokenizer

    assert not loaded.model.training
    assert loaded.source == tiny_checkpoint
    assert loaded.dtype == torch.float32
    assert loaded.eos_token_ids == (
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    assert loaded.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert loaded.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert loaded.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert loaded.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert loaded.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert loaded.num_parameters == sum(p.numel() for p in loaded.model.parameters())
    assert loaded.weight_bytes == 4 * loaded.num_parameters
    assert loaded.processor.tokenizer is tokenizer
    assert type(loaded.processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")


def test_dtype_and_threads_are_applied(tiny_checkpoint: Path) -> None:
    before = torch.get_num_threads()
    try:
        loaded = load_model(str(tiny_checkpoint), dtype=torch.bfloat16, threads=1, progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.weight_bytes == 2 * loaded.num_parameters


def test_loaded_model_generates_from_a_chat(tiny_model: LoadedModel) -> None:
    from PIL import Image

    messages = [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (96, 64))},
                {"type": "text", "text": "Hi"},
            ],
        },
    ]
    inputs = tiny_model.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = tiny_model.model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_missing_folder_is_model_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound, match="does not exist") as error:
        load_model(str(missing), progress=False)
    assert str(missing) in str(error.value)


def test_file_instead_of_folder_is_model_not_found(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelNotFound, match="is a file"):
        load_model(str(path), progress=False)


def test_folder_without_weights_names_them(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "model.safetensors").unlink()
    with pytest.raises(IncompleteCheckpoint, match=r"missing model\.safetensors") as error:
        load_model(str(checkpoint_copy), progress=False)
    assert error.value.missing == ["model.safetensors (or model.safetensors.index.json with its shards)"]


def test_folder_without_tokenizer_names_it(checkpoint_copy: Path) -> None:
    for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json"):
        (checkpoint_copy / name).unlink()
    with pytest.raises(IncompleteCheckpoint) as error:
        load_model(str(checkpoint_copy), progress=False)
    assert error.value.missing == ["tokenizer.json (or vocab.json + merges.txt)", "tokenizer_config.json"]


def test_missing_shard_of_a_sharded_checkpoint_is_named(checkpoint_copy: Path) -> None:
    """An interrupted copy of a sharded checkpoint: the index lists a shard that is not there."""
    (checkpoint_copy / "model.safetensors").rename(checkpoint_copy / "model-00001-of-00002.safetensors")
    index = {
        "metadata": {"total_size": 0},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (checkpoint_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    assert missing_files(checkpoint_copy) == ["model-00002-of-00002.safetensors"]


def test_missing_preprocessor_and_template_are_named(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "preprocessor_config.json").unlink()
    (checkpoint_copy / "chat_template.json").unlink()
    config = json.loads((checkpoint_copy / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (checkpoint_copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert missing_files(checkpoint_copy) == [
        "preprocessor_config.json",
        "chat_template.json (or chat_template.jinja)",
    ]


def test_corrupt_weights_are_a_model_load_error(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelLoadError, match="could not load the checkpoint"):
        load_model(str(checkpoint_copy), progress=False)


def test_other_model_type_is_refused(checkpoint_copy: Path) -> None:
    config = json.loads((checkpoint_copy / "config.json").read_text())
    config["model_type"] = "llama"
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="Qwen3-VL"):
        load_model(str(checkpoint_copy), progress=False)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Qwen/Qwen3-VL-2B-Instruct", True),
        ("org/model.v2", True),
        ("/models/Qwen3-VL-2B-Instruct", False),
        ("./models/qwen", False),
        ("models/qwen/extra", False),
        ("~/qwen", False),
    ],
)
def test_hub_ids_and_paths_are_told_apart(model: str, expected: bool) -> None:
    assert is_hub_id(model) is expected


def test_unreachable_hub_tells_the_user_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN no network WHEN a hub id is loaded THEN the error says to download elsewhere and
    point VISION_MODEL at the folder (no stack trace from huggingface_hub)."""

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelNotFound, match="unreachable") as error:
        load_model("Qwen/Qwen3-VL-2B-Instruct", progress=False)
    assert "VISION_MODEL" in str(error.value)


def test_unknown_hub_repo_is_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(*args, **kwargs):
        request = httpx.Request("GET", "https://huggingface.co/api/models/nobody/nothing")
        raise RepositoryNotFoundError("404", response=httpx.Response(404, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unknown)
    with pytest.raises(ModelNotFound, match="not an accessible model"):
        load_model("nobody/nothing", progress=False)


def test_hub_id_loads_from_the_downloaded_snapshot(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    calls: list[str] = []

    def download(repo_id: str, **kwargs) -> str:
        calls.append(repo_id)
        return str(tiny_checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    loaded = load_model("Qwen/Qwen3-VL-2B-Instruct", progress=False)
    assert calls == ["Qwen/Qwen3-VL-2B-Instruct"]
    assert loaded.source == tiny_checkpoint
