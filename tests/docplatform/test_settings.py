import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from docplatform.settings.env import env_bool, env_int, env_list
from docplatform.settings.vision import parse_vision_dtype
from tests.conftest import REPO_ROOT


def _django_setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_ENV", "DATA_DIR"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "docplatform.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secret_key(tmp_path):
    result = _django_setup({"DJANGO_ENV": "production", "DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr


def test_production_starts_with_secret_key(tmp_path):
    result = _django_setup({"DJANGO_ENV": "production", "SECRET_KEY": "s" * 50, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "s" * 50


def test_development_generates_and_keeps_a_secret_key(tmp_path):
    first = _django_setup({"DATA_DIR": str(tmp_path)})
    second = _django_setup({"DATA_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    key = (tmp_path / "secret_key").read_text().strip()
    assert len(key) >= 50
    assert first.stdout.strip() == second.stdout.strip() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_typed_readers(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.setenv("X_BAD", "twelve")
    assert env_bool("X_BOOL", False) is True
    assert env_bool("X_UNSET", True) is True
    assert env_int("X_INT", 1) == 12
    assert env_list("X_LIST", []) == ["a", "b", "c"]
    with pytest.raises(ImproperlyConfigured, match="X_BAD must be an integer"):
        env_int("X_BAD", 1)
    with pytest.raises(ImproperlyConfigured, match=">= 20"):
        env_int("X_INT", 1, minimum=20)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", "auto"),
        ("INT8", "int8"),
        ("vision=bf16, lm=int8", "lm=int8,vision=bf16"),
        ("lm=int4", "lm=int4"),
    ],
)
def test_vision_dtype_accepted(value, expected):
    assert parse_vision_dtype(value) == expected


@pytest.mark.parametrize("value", ["fp16", "lm=int8,lm=bf16", "text=int8", "lm=", "lm=int3"])
def test_vision_dtype_refused(value):
    with pytest.raises(ImproperlyConfigured):
        parse_vision_dtype(value)


def test_cache_uses_its_own_redis_database(settings):
    """cache.clear() flushes a whole Redis database; it must not be Celery's."""
    assert settings.CACHES["default"]["LOCATION"] != settings.CELERY_BROKER_URL


def test_celery_reliability_settings(settings):
    from docplatform.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.accept_content == ["json"]
    # Every task's deadline is the engine's (Celery's time limits do nothing in the threads pool),
    # and Redis must not redeliver a message whose task is still within it.
    assert app.conf.task_time_limit is None and app.conf.task_soft_time_limit is None
    assert app.conf.broker_transport_options["visibility_timeout"] > max(
        settings.VISION_JOB_TIME_LIMIT, settings.OPENAI_REQUEST_TIMEOUT_SECONDS
    )


def test_a_bad_media_storage_fails_at_start_up(tmp_path):
    result = _django_setup({"DATA_DIR": str(tmp_path), "MEDIA_STORAGE": "ftp"})
    assert result.returncode != 0
    assert "MEDIA_STORAGE must be one of ['local', 's3'], got 'ftp'" in result.stderr


def test_s3_media_storage_options(monkeypatch):
    from docplatform.settings.storage import media_storage

    for name, value in {
        "MEDIA_STORAGE": "s3",
        "S3_BUCKET": "docs",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "S3_REGION": "eu-central-1",
        "S3_ACCESS_KEY_ID": "key",
        "S3_SECRET_ACCESS_KEY": "secret",
    }.items():
        monkeypatch.setenv(name, value)

    kind, backend = media_storage(presigned_seconds=0)

    assert kind == "s3" and backend["BACKEND"] == "storages.backends.s3.S3Storage"
    options = backend["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"], options["region_name"]) == (
        "docs",
        "http://127.0.0.1:9000",
        "eu-central-1",
    )
    assert (options["access_key"], options["secret_key"]) == ("key", "secret")
    assert options["object_parameters"] == {"ServerSideEncryption": "AES256"}  # the default
    assert options["file_overwrite"] is False and options["addressing_style"] == "path"

    monkeypatch.setenv("S3_SSE", "aws:kms")
    monkeypatch.setenv("S3_SSE_KMS_KEY_ID", "alias/docs")
    assert media_storage(presigned_seconds=0)[1]["OPTIONS"]["object_parameters"] == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/docs",
    }
    monkeypatch.setenv("S3_SSE", "none")
    assert media_storage(presigned_seconds=30)[1]["OPTIONS"]["object_parameters"] == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIA_STORAGE": "s3"}, "S3_BUCKET must be set when MEDIA_STORAGE=s3"),
        ({"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_SSE": "rot13"}, "S3_SSE must be one of"),
    ],
)
def test_s3_media_storage_refusals(monkeypatch, env, message):
    from docplatform.settings.storage import media_storage

    for name in ("S3_BUCKET", "S3_SSE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        media_storage(presigned_seconds=0)


def test_presigned_downloads_need_s3(monkeypatch):
    from docplatform.settings.storage import media_storage, presigned_seconds

    monkeypatch.delenv("MEDIA_STORAGE", raising=False)
    assert media_storage(presigned_seconds=0)[0] == "local"
    with pytest.raises(ImproperlyConfigured, match="MEDIA_PRESIGNED_SECONDS needs MEDIA_STORAGE=s3"):
        media_storage(presigned_seconds=60)
    monkeypatch.setenv("MEDIA_PRESIGNED_SECONDS", "86400")
    with pytest.raises(ImproperlyConfigured, match="short-lived"):
        presigned_seconds()
