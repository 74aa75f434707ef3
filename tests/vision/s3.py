"""The S3-compatible server scripts/test.sh starts (moto on loopback, env S3_*): switch a test's
Django settings to the bucket, and look at the bucket with a plain boto3 client, as against AWS.

The suite runs on local media; a test that wants the bucket asks for the `s3_media` fixture
(tests/vision/conftest.py) or calls `use_s3`.
"""

from __future__ import annotations

import os

import boto3
import pytest

from docplatform.settings.storage import s3_backend

S3_VARIABLES = ("S3_ENDPOINT_URL", "S3_BUCKET", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")


def s3_env() -> dict[str, str]:
    """The S3_* variables of the test server; fails (never skips) without scripts/test.sh."""
    missing = [name for name in S3_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} unset: run the suite with scripts/test.sh (it starts the S3 server)"
        )
    return {name: os.environ[name] for name in S3_VARIABLES}


def s3_client():
    env = s3_env()
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name=env["S3_REGION"],
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
    )


def bucket() -> str:
    return s3_env()["S3_BUCKET"]


def object_keys(prefix: str) -> set[str]:
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix)
    return {entry["Key"] for page in pages for entry in page.get("Contents", ())}


def object_exists(key: str) -> bool:
    return key in object_keys(key)


def use_s3(settings, *, endpoint_url: str | None = None, presigned_seconds: int = 0) -> None:
    """Point this test's Django settings at the test bucket, with the options a deployment with
    MEDIA_STORAGE=s3 gets (docplatform/settings/storage.py)."""
    env = s3_env()
    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_PRESIGNED_SECONDS = presigned_seconds
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_backend(
            bucket=env["S3_BUCKET"],
            endpoint_url=endpoint_url or env["S3_ENDPOINT_URL"],
            region=env["S3_REGION"],
            access_key=env["S3_ACCESS_KEY_ID"],
            secret_key=env["S3_SECRET_ACCESS_KEY"],
            sse="AES256",
            kms_key_id=None,
            presigned_seconds=presigned_seconds,
        ),
    }
