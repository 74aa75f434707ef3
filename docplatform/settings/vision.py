"""Validation of the VISION_* settings that have a small grammar of their own."""

from django.core.exceptions import ImproperlyConfigured

DTYPES = {"fp32", "bf16", "int8", "int4", "w8a8", "auto"}
DTYPE_PARTS = {"lm", "vision"}


def parse_vision_dtype(value: str) -> str:
    """Accept one format for the whole model ("int8") or one per part ("lm=int8,vision=bf16").

    Returns the normalised string; the engine parses it again, this only fails a bad deploy early.
    """
    value = value.strip().lower()
    if "=" not in value:
        if value not in DTYPES:
            raise ImproperlyConfigured(
                f"VISION_DTYPE must be one of {sorted(DTYPES)} or 'lm=…,vision=…', got {value!r}"
            )
        return value
    parts: dict[str, str] = {}
    for item in value.split(","):
        part, _, dtype = (piece.strip() for piece in item.partition("="))
        if part not in DTYPE_PARTS or dtype not in DTYPES or part in parts:
            raise ImproperlyConfigured(
                f"VISION_DTYPE part {item!r} is not '<lm|vision>=<{'|'.join(sorted(DTYPES))}>'"
            )
        parts[part] = dtype
    return ",".join(f"{part}={parts[part]}" for part in sorted(parts))
