"""The vision app's settings: the engine a worker loads, uploads and jobs, the OpenAI-compatible
API (/v1), the answer cache and sticky routing; and the check of VISION_DTYPE's small grammar.
Read into `docplatform.settings` (every upper-case name here is a setting)."""

from django.core.exceptions import ImproperlyConfigured

from docplatform.settings.env import env_bool, env_choice, env_int, env_optional_str, env_str
from vision.engine.contract import (
    CHAT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    DEFAULT_MODEL,
    DOCUMENT_MAX_PIXELS,
    weight_format_parts,
)
from vision.engine.cpuinfo import physical_cores


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


# --- vision engine ---------------------------------------------------------------------------

# Engine loading in the worker: "on", or "off" for a pure-queue worker (no model).
VISION_ENGINE = env_choice("VISION_ENGINE", "on", {"on", "off"})
VISION_MODEL = env_str("VISION_MODEL", DEFAULT_MODEL)
VISION_DTYPE = parse_vision_dtype(env_str("VISION_DTYPE", "auto"))
VISION_THREADS = env_int("VISION_THREADS", physical_cores(), minimum=1)
VISION_MAX_BATCH = env_int("VISION_MAX_BATCH", 8, minimum=1)
VISION_KV_CACHE_MB = env_int("VISION_KV_CACHE_MB", 2048, minimum=0)
# Pixel budgets, in pixels after resizing (Qwen3-VL: one image token per 32x32 pixels after the
# 2x2 merge of 16-pixel patches). Chat photos: 640 tokens' worth (~650k px). Documents: ~1.0 M px
# (~1000 image tokens), enough to read 10-pt text on an A4 page at ~120 dpi while keeping the
# vision tower near 45 s on two cores instead of ~100 s at full scan size.
VISION_MIN_PIXELS = env_int("VISION_MIN_PIXELS", DEFAULT_MIN_PIXELS, minimum=1)
VISION_MAX_PIXELS_CHAT = env_int("VISION_MAX_PIXELS_CHAT", CHAT_MAX_PIXELS, minimum=1)
VISION_MAX_PIXELS_DOCUMENT = env_int("VISION_MAX_PIXELS_DOCUMENT", DOCUMENT_MAX_PIXELS, minimum=1)

# --- uploads and jobs (vision/validators.py, vision/services/) ---------------------------------

# 25 MB: a 20-page 300 dpi scan as PDF or a 48 MP phone JPEG fits; more is not a document.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 25 * 1024 * 1024, minimum=1)
# Decoded pixels per image or rendered page. 50 M covers a 600 dpi A4 scan (~35 M) and 48 MP
# phone photos; a decompression bomb (a tiny file declaring 100k x 100k pixels) is refused from its
# header before any decoding. Pillow's own bomb check is set to the same value.
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 50_000_000, minimum=1)
UPLOAD_PDF_MAX_PAGES = env_int("UPLOAD_PDF_MAX_PAGES", 20, minimum=1)
# PDF pages are rendered at this DPI (A4 at 150 dpi = 1240x1754, ~2.2 M px: well above the model's
# document pixel budget, so small print survives the resize), lowered per page to stay under
# UPLOAD_MAX_PIXELS.
UPLOAD_PDF_DPI = env_int("UPLOAD_PDF_DPI", 150, minimum=36)
# Optional virus scan by clamd (README "Virus scanning"): a unix socket, or host + port.
CLAMD_SOCKET = env_optional_str("CLAMD_SOCKET")
CLAMD_HOST = env_optional_str("CLAMD_HOST")
CLAMD_PORT = env_int("CLAMD_PORT", 3310, minimum=1)
CLAMD_TIMEOUT_SECONDS = env_int("CLAMD_TIMEOUT_SECONDS", 30, minimum=1)

# A job whose worker vanished is retried this many times in all, then failed (poison jobs).
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
# A running job whose worker's heartbeat is gone is requeued once it has run this long: longer
# than the heartbeat TTL, so a worker's Redis blip does not double-run its jobs.
JOB_STUCK_GRACE_SECONDS = env_int("JOB_STUCK_GRACE_SECONDS", 60, minimum=1)
# A job whose run hit an unreachable service (Redis, database, media store) is run again by the
# same worker after a backoff with jitter (1 s doubling up to 30 s), this many times, then failed
# `service_unavailable`. These runs count in `attempts`, not against JOB_MAX_ATTEMPTS.
JOB_SERVICE_RETRIES = env_int("JOB_SERVICE_RETRIES", 8, minimum=0)
JOB_DEFAULT_MAX_TOKENS = env_int("JOB_DEFAULT_MAX_TOKENS", 512, minimum=1)
JOB_MAX_TOKENS_LIMIT = env_int("JOB_MAX_TOKENS_LIMIT", 4096, minimum=1)
BATCH_MAX_FILES = env_int("BATCH_MAX_FILES", 50, minimum=1)

# --- OpenAI-compatible API (/v1), answer cache, sticky routing --------------------------------

# The model id /v1/models lists (vLLM's --served-model-name): never the
# checkpoint's folder, which is a server detail. Requests may also name OPENAI_MODEL_ALIAS or
# VISION_MODEL itself, as earlier versions advertised them.
VISION_SERVED_MODEL_NAME = env_str("VISION_SERVED_MODEL_NAME", "qwen3-vl-2b-instruct")
OPENAI_MODEL_ALIAS = env_str("OPENAI_MODEL_ALIAS", "qwen3-vl-2b")
# A request body holds the history and data: URL images (base64 is 4/3 of the bytes).
OPENAI_MAX_BODY_BYTES = env_int("OPENAI_MAX_BODY_BYTES", 24 * 1024 * 1024, minimum=1024)
OPENAI_MAX_MESSAGES = env_int("OPENAI_MAX_MESSAGES", 256, minimum=1)
OPENAI_MAX_IMAGES = env_int("OPENAI_MAX_IMAGES", 8, minimum=0)
OPENAI_MAX_IMAGE_BYTES = env_int("OPENAI_MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1024)
OPENAI_DEFAULT_MAX_TOKENS = env_int("OPENAI_DEFAULT_MAX_TOKENS", 512, minimum=1)
OPENAI_MAX_TOKENS_LIMIT = env_int("OPENAI_MAX_TOKENS_LIMIT", 4096, minimum=1)
# The longest a /v1 request waits for its answer (queue + generation); the engine's own deadline.
OPENAI_REQUEST_TIMEOUT_SECONDS = env_int("OPENAI_REQUEST_TIMEOUT_SECONDS", 600, minimum=5)
# Generations queued or running at once (all workers); beyond it /v1 answers 429 + Retry-After.
OPENAI_MAX_PENDING = env_int("OPENAI_MAX_PENDING", 64, minimum=1)
# image_url over http(s): off by default (SSRF surface). When on, fetched with DNS pinning and
# re-checks on every redirect (vision/openai/fetch.py).
OPENAI_IMAGE_URL_FETCH = env_bool("OPENAI_IMAGE_URL_FETCH", False)
OPENAI_IMAGE_FETCH_TIMEOUT_SECONDS = env_int("OPENAI_IMAGE_FETCH_TIMEOUT_SECONDS", 10, minimum=1)
OPENAI_IMAGE_FETCH_MAX_REDIRECTS = env_int("OPENAI_IMAGE_FETCH_MAX_REDIRECTS", 3, minimum=0)
# Deterministic answers (greedy, or seeded sampling) kept in Redis and replayed for an identical
# request. Per user unless ANSWER_CACHE_SHARED.
ANSWER_CACHE_ENABLED = env_bool("ANSWER_CACHE_ENABLED", True)
ANSWER_CACHE_TTL_SECONDS = env_int("ANSWER_CACHE_TTL_SECONDS", 24 * 3600, minimum=1)
ANSWER_CACHE_MAX_ENTRIES = env_int("ANSWER_CACHE_MAX_ENTRIES", 10_000, minimum=1)
ANSWER_CACHE_SHARED = env_bool("ANSWER_CACHE_SHARED", False)
# Follow-up turns go to the worker holding the conversation's KV prefix unless more than this many
# messages already wait in that worker's own queue.
STICKY_MAX_QUEUE_DEPTH = env_int("STICKY_MAX_QUEUE_DEPTH", 4, minimum=0)
STICKY_TTL_SECONDS = env_int("STICKY_TTL_SECONDS", 3600, minimum=1)
# A request sent to a worker's own queue that has not started after this long, while that worker's
# heartbeat is gone, is sent again to the shared queue (a killed worker's queue has no consumer).
STICKY_START_TIMEOUT_SECONDS = env_int("STICKY_START_TIMEOUT_SECONDS", 15, minimum=1)
