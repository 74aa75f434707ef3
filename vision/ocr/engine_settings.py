"""What the OCR engine runs with: its settings (arguments, environment, defaults) and the int8
models the `quantized` setting selects. No Django; onnxruntime loads only to quantize a model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Engine settings: a constructor argument wins, else the environment variable, else the default.
# The defaults read pages exactly as RapidOCR's own pipeline does; `OCR_DET_SIDE`, `OCR_CLASSIFIER`,
# `OCR_REC_BATCH` and `OCR_QUANTIZED` change the text a page gives, so they stay opt-in.
ENV = {
    "threads": "OCR_THREADS",
    "spinning": "OCR_SPINNING",
    "rec_batch": "OCR_REC_BATCH",
    "det_side": "OCR_DET_SIDE",
    "classifier": "OCR_CLASSIFIER",
    "quantized": "OCR_QUANTIZED",
}
CLASSIFIER_MODES = ("always", "doubt")


def _env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class OcrSettings:
    threads: int = 0  # intra-op threads of each ONNX Runtime session; 0 = this process's physical cores
    spinning: bool = False  # idle intra-op threads spin (burns the cores the worker's other threads need)
    rec_batch: int = 6  # recognition crops per batch (sorted by width, padded to the batch's widest)
    det_side: int = 0  # the detector's input long side is at most this; 0 = the page itself (<= MAX_SIDE)
    classifier: str = "always"  # direction classifier on every line, or only on lines read with a low score
    quantized: bool = False  # int8 (dynamic quantization) detection and recognition models

    @classmethod
    def resolve(cls, **given: Any) -> OcrSettings:
        """Settings from the arguments given (None = not given), else the environment, else defaults."""
        import os

        values: dict[str, Any] = {}
        for name, default in ((f.name, f.default) for f in fields(cls)):
            value = given.get(name)
            if value is None and os.environ.get(ENV[name], "").strip():
                raw = os.environ[ENV[name]]
                value = _env_bool(raw) if isinstance(default, bool) else type(default)(raw.strip())
            values[name] = default if value is None else value
        if values["classifier"] not in CLASSIFIER_MODES:
            mode = values["classifier"]
            raise ValueError(f"OCR classifier mode {mode!r}: choose {' or '.join(CLASSIFIER_MODES)}")
        if values["threads"] <= 0:
            from vision.engine.cpuinfo import physical_cores

            values["threads"] = physical_cores()
        values["rec_batch"] = max(1, values["rec_batch"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"inter_op_threads": 1}


def quantized_model(source: Path) -> Path:
    """An int8 copy of `source` (onnxruntime's dynamic quantization), made once into the cache
    folder (OCR_MODEL_CACHE, else ~/.cache/docplatform/ocr) and reused."""
    import hashlib
    import os

    cache = Path(os.environ.get("OCR_MODEL_CACHE") or Path.home() / ".cache" / "docplatform" / "ocr")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = cache / f"{source.stem}.int8-{digest}.onnx"
    if not target.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        quantize_dynamic(str(source), str(partial), weight_type=QuantType.QUInt8)
        partial.replace(target)  # atomic: a concurrent process sees a whole file or none
    return target
