"""DocPlatform settings. Every value comes from the environment through the typed readers in
`env.py`; the README's settings table lists each variable, its default and its meaning.

`DJANGO_ENV` selects the mode:
- `development` (default): safe laptop defaults, a SECRET_KEY generated into `data/secret_key`.
- `production`: refuses to start without SECRET_KEY, secure cookies.
- `test`: fast password hashers, a file SQLite database shared with the test worker process.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from docplatform.settings.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_optional_str,
    env_path,
    env_str,
)
from docplatform.settings.storage import media_storage, presigned_seconds
from vision.heartbeat import SHARED_QUEUE, WORKER_QUEUES

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = env_path("DATA_DIR", BASE_DIR / "data")

DJANGO_ENV = env_choice("DJANGO_ENV", "development", {"development", "production", "test"})
PRODUCTION = DJANGO_ENV == "production"
TESTING = DJANGO_ENV == "test"

# --- core ------------------------------------------------------------------------------------


def _secret_key() -> str:
    configured = env_optional_str("SECRET_KEY")
    if configured:
        return configured
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production")
    # Laptop mode: generate once and keep it, so sessions and JWTs survive restarts.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally: /api/docs/ works offline
    "accounts",
    "vision",
]

MIDDLEWARE = [
    # Outermost: times every response, static files included (docplatform/metrics/web.py).
    "docplatform.metrics.web.http_metrics_middleware",
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, async-capable: a sync middleware would put every ASGI request on a thread.
    "docplatform.static.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the portal's language comes from the language cookie
    # (set_language) or else the browser's Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "docplatform.urls"
WSGI_APPLICATION = "docplatform.wsgi.application"
ASGI_APPLICATION = "docplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organization",
            ],
        },
    },
]

# --- database --------------------------------------------------------------------------------

_default_sqlite = DATA_DIR / ("test-db.sqlite3" if TESTING else "db.sqlite3")
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{_default_sqlite}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker write the same file: WAL lets readers run during a write,
        # IMMEDIATE takes the write lock up front (no mid-transaction "database is locked"), and
        # the timeout waits for the other process instead of failing at once.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
if TESTING:
    # The test worker and the servers tests start are separate processes that open the database
    # DATABASE_URL names, so pytest's test database must be that same one: for SQLite the file
    # (pytest-django's default is in-memory, invisible to other processes), for PostgreSQL the
    # database itself (the default `test_<name>` is one the worker never opens). pytest keeps it
    # (tests/conftest.py: django_db_keepdb) and scripts/test.sh makes a fresh one for every run.
    DATABASES["default"]["TEST"] = {"NAME": DATABASES["default"]["NAME"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- redis, cache ----------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")


def _next_redis_db(url: str) -> str:
    # The cache gets its own database so cache.clear() (FLUSHDB) never touches Celery's queues
    # or the worker heartbeats.
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db + 1}"))


CACHE_URL = env_str("CACHE_URL", _next_redis_db(REDIS_URL))
# Short timeouts: a dead Redis must turn into a quick error, never a hung request.
REDIS_SOCKET_TIMEOUT = 1.0
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "docplatform",
        "OPTIONS": {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT},
    }
}

# --- auth ------------------------------------------------------------------------------------

if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal-login"
LOGIN_REDIRECT_URL = "portal-home"
LOGOUT_REDIRECT_URL = "portal-login"

# Failed-login lockout, per username + client IP, for the portal form and the JWT endpoint.
LOGIN_LOCKOUT_ATTEMPTS = env_int("LOGIN_LOCKOUT_ATTEMPTS", 5, minimum=1)
LOGIN_LOCKOUT_WINDOW_SECONDS = env_int("LOGIN_LOCKOUT_WINDOW_SECONDS", 15 * 60, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.ApiKeyScopes",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "accounts.throttles.AnonThrottle",
        "accounts.throttles.UserThrottle",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's defaults, with a JSON parser that answers 400 (not 500) to deeply nested bodies.
    "DEFAULT_PARSER_CLASSES": [
        "docplatform.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "docplatform.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Read at request time by accounts.throttles (DRF's own classes freeze rates at import).
API_THROTTLE_RATES = {
    "anon": env_str("THROTTLE_ANON_RATE", "60/minute"),
    "user": env_str("THROTTLE_USER_RATE", "600/minute"),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "DocPlatform API",
    "DESCRIPTION": "Documents, jobs and an OpenAI-compatible chat API over Qwen3-VL on CPU.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "vision.openai.schema.openai_paths",  # the async /v1 views, which spectacular cannot see
    ],
}

# --- security --------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- files -----------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = env_path("STATIC_ROOT", DATA_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploads live outside every served path; they are only ever read back through views that
# check ownership.
MEDIA_ROOT = env_path("MEDIA_ROOT", DATA_DIR / "media")
MEDIA_URL = None
# MEDIA_STORAGE=local (MEDIA_ROOT) or s3 (S3_BUCKET, S3_ENDPOINT_URL, S3_REGION, S3_ACCESS_KEY_ID,
# S3_SECRET_ACCESS_KEY, S3_SSE, S3_SSE_KMS_KEY_ID): docplatform/settings/storage.py. Every read
# and write of media goes through vision/media.py.
MEDIA_PRESIGNED_SECONDS = presigned_seconds()
MEDIA_STORAGE, _media_backend = media_storage(presigned_seconds=MEDIA_PRESIGNED_SECONDS)
STORAGES = {
    "default": _media_backend,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION

LANGUAGE_CODE = "en"
# The portal speaks English and Simplified Chinese (the article's audience). The compiled catalog
# (locale/zh_Hans/LC_MESSAGES/django.mo) is committed, so running needs no gettext tools.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

if TESTING:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- celery ----------------------------------------------------------------------------------

# The longest job we accept: a full A4 scan is ~100 s of vision tower plus ~45 s of prefill in
# fp32 on two AVX2 cores, then decoding up to a few thousand tokens at 0.16-0.48 s each. 30 min
# covers that with room for a queue of them sharing the engine's batch.
VISION_JOB_TIME_LIMIT = env_int("VISION_JOB_TIME_LIMIT", 30 * 60, minimum=10)

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_TASK_DEFAULT_QUEUE = SHARED_QUEUE  # VLM work (caption, vqa, chat jobs, /v1 generations)
# The queues a worker started without -Q consumes: VLM work and OCR work (OCR and invoice jobs,
# vision.capabilities.task_queue). Two queues so OCR jobs never wait behind a backlog of slow VLM
# jobs (docs/architecture.md, "Queues"). A worker started with -Q gets the OCR queue added.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in WORKER_QUEUES]
CELERY_TASK_TRACK_STARTED = True
# Ack after the task finished, and put the message back when the worker process dies mid-task:
# a job is never lost to a crash. Tasks are idempotent on their row because of this.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Reserve one message per thread only: a long job must not sit prefetched behind another while a
# different worker is idle.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No CELERY_TASK_TIME_LIMIT / SOFT_TIME_LIMIT: the threads pool (the only one a vision worker
# runs) ignores them. Each job's and chat's deadline is enforced by the engine itself
# (VISION_JOB_TIME_LIMIT, OPENAI_REQUEST_TIMEOUT_SECONDS).
# Redis redelivers an unacked message after visibility_timeout. With late acks a message stays
# unacked while its task runs, so it must exceed every task's own deadline (a job's
# VISION_JOB_TIME_LIMIT, a chat's OPENAI_REQUEST_TIMEOUT_SECONDS; checked at the end of this file)
# or a slow job is delivered twice (harmless: the job row / chat claim decides, but wasted). It is
# also how long a message held by a killed worker waits before it comes back, so keep it short:
# deadline + 5 min (35 min by default). Jobs do not wait for it: the stuck-job watchdog requeues
# them after JOB_STUCK_GRACE_SECONDS. Tests set it to seconds through the env.
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int(
    "CELERY_VISIBILITY_TIMEOUT_SECONDS", VISION_JOB_TIME_LIMIT + 300, minimum=10
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    # How often a consumer sweeps for messages past the visibility timeout: every
    # interval * throttle seconds (kombu's default 10 * 10 = 100 s), at most a tenth of the timeout.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_SECONDS // 10)),
    "unacked_restore_throttle": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_SECONDS // 100)),
    # A dead or frozen Redis turns into a quick error (the API answers 503), never a hung request.
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS}
# Publishing retries a lost connection a little, then fails (web: 503 queue_unavailable) instead
# of blocking the request; kombu's default would wait up to ~1 s per retry with no socket bound.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# On a lost broker connection, cancel running late-ack tasks: they will be redelivered, and
# finishing them would run them twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# `celery -A docplatform worker` with no flags is a working vision worker (docplatform/celery.py):
# the threads pool (one process, one engine, several tasks feeding its batching scheduler; any
# other pool is refused at start), WORKER_CONCURRENCY task threads, and the default queue `vision`.
# -c / -Q / -n on the command line still override these.
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 4, minimum=1)
# `celery -A docplatform beat` (one process per deployment: scripts/start.sh, docker compose)
# sends the periodic tasks; its schedule state lives in DATA_DIR.
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Documents past their organisation's (or document type's) retention go, with their files
    # (vision.services.retention); daily at RETENTION_HOUR:RETENTION_MINUTE UTC.
    "retention-daily": {
        "task": "vision.retention_run",
        "schedule": crontab(
            hour=env_int("RETENTION_HOUR", 3, minimum=0), minute=env_int("RETENTION_MINUTE", 30, minimum=0)
        ),
    },
}

# --- retention and share links ----------------------------------------------------------------

# A retention run deletes this many documents per transaction (vision.services.retention).
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 100, minimum=1)
# Share links (vision.services.sharing): valid this many days unless the sharer picks another
# lifetime, at most SHARE_LINK_MAX_DAYS (and at least an hour).
SHARE_LINK_DEFAULT_DAYS = env_int("SHARE_LINK_DEFAULT_DAYS", 7, minimum=1)
SHARE_LINK_MAX_DAYS = env_int("SHARE_LINK_MAX_DAYS", 90, minimum=1)

# --- web process ------------------------------------------------------------------------------

# Threads that run the sync work (ORM, cache, image checks) of async requests, shared by all of
# them (docplatform/aio.py): with 256 /v1 streams open the web process still has about this many
# threads plus a few of its own, and at most this many database connections from them.
WEB_SYNC_THREADS = env_int("WEB_SYNC_THREADS", 8, minimum=1)

# --- metrics ---------------------------------------------------------------------------------

# GET /metrics (Prometheus) answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is off.
METRICS_TOKEN = env_optional_str("METRICS_TOKEN")
# /metrics labels /v1 requests by organisation: this many organisations per process by slug, the
# rest as "other", so the number of series stays bounded however many organisations there are.
METRICS_MAX_ORGANIZATIONS = env_int("METRICS_MAX_ORGANIZATIONS", 50, minimum=0)

# --- worker heartbeat ------------------------------------------------------------------------

WORKER_HEARTBEAT_INTERVAL_SECONDS = env_int("WORKER_HEARTBEAT_INTERVAL_SECONDS", 5, minimum=1)
WORKER_HEARTBEAT_TTL_SECONDS = env_int("WORKER_HEARTBEAT_TTL_SECONDS", 20, minimum=2)

# --- the vision app: engine, uploads and jobs, /v1 (settings/vision.py) -----------------------

from docplatform.settings.vision import *  # noqa: E402, F403
from docplatform.settings.vision import OPENAI_REQUEST_TIMEOUT_SECONDS  # noqa: E402  (the cross-check)

# --- cross-checks ----------------------------------------------------------------------------

if max(VISION_JOB_TIME_LIMIT, OPENAI_REQUEST_TIMEOUT_SECONDS) >= CELERY_VISIBILITY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT_SECONDS ({CELERY_VISIBILITY_TIMEOUT_SECONDS}) must exceed "
        f"VISION_JOB_TIME_LIMIT ({VISION_JOB_TIME_LIMIT}) and OPENAI_REQUEST_TIMEOUT_SECONDS "
        f"({OPENAI_REQUEST_TIMEOUT_SECONDS}), or running tasks are delivered twice"
    )

if SHARE_LINK_DEFAULT_DAYS > SHARE_LINK_MAX_DAYS:
    raise ImproperlyConfigured(
        f"SHARE_LINK_DEFAULT_DAYS ({SHARE_LINK_DEFAULT_DAYS}) must not exceed SHARE_LINK_MAX_DAYS "
        f"({SHARE_LINK_MAX_DAYS})"
    )
