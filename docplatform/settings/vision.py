"""Validation of the VISION_* settings that have a small grammar of their own."""

from django.core.exceptions import ImproperlyConfigured

from vision.engine.contract import weight_format_parts


def parse_vision_dtype(value: str) -> str:
    """Accept one format for the whole model ("int8") or one per part ("lm=int8,vision=bf16").

    Returns the normalised string. The grammar is `vision.engine.contract.weight_format_parts`, which the
    engine resolves again at load; this only fails a bad deploy early, in every process.
    """
    try:
        parts = weight_format_parts(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"VISION_DTYPE: {exc}") from exc
    if "*" in parts:
        return parts["*"]
    return ",".join(f"{part}={parts[part]}" for part in sorted(parts))
