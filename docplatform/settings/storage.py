"""Where uploads and page images live: `MEDIA_STORAGE=local` (the default, a folder, MEDIA_ROOT)
or `s3` (an S3-compatible bucket through django-storages and boto3).

`media_storage()` reads the variables and returns Django's `STORAGES["default"]`; a bad value or an
S3 deployment without a bucket fails at start-up. `s3_backend()` is the S3 entry on its own, so a
test can switch one case to the bucket with the same options a deployment gets.
"""

from django.core.exceptions import ImproperlyConfigured

from docplatform.settings.env import env_choice, env_int, env_optional_str

LOCAL_BACKEND = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
S3_SSE_CHOICES = {"aes256": "AES256", "aws:kms": "aws:kms", "none": ""}


def s3_backend(
    *,
    bucket: str,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    sse: str,
    kms_key_id: str | None,
    presigned_seconds: int,
) -> dict:
    """`STORAGES["default"]` for a bucket. `sse`: "AES256", "aws:kms" or "" (none). Unset keys
    leave boto3 its own credential chain (an instance role, AWS_* variables)."""
    object_parameters: dict[str, str] = {}
    if sse:
        object_parameters["ServerSideEncryption"] = sse
        if sse == "aws:kms" and kms_key_id:
            object_parameters["SSEKMSKeyId"] = kms_key_id
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": region,
            "access_key": access_key,
            "secret_key": secret_key,
            "object_parameters": object_parameters,
            # Upload paths are random; never replace an object silently if two ever met.
            "file_overwrite": False,
            "default_acl": None,  # the bucket's own policy: private
            # url() is only used for the presigned download (MEDIA_PRESIGNED_SECONDS).
            "querystring_auth": True,
            "querystring_expire": max(presigned_seconds, 1),
            # Signature V4 everywhere (V2 is refused by newer AWS regions): presigned URLs carry
            # their TTL as X-Amz-Expires.
            "signature_version": "s3v4",
            # S3-compatible servers (MinIO, Ceph, moto) are reached by path, not bucket.host names.
            "addressing_style": "path" if endpoint_url else None,
        },
    }


def media_storage(*, presigned_seconds: int) -> tuple[str, dict]:
    """(MEDIA_STORAGE, STORAGES["default"]) from the environment."""
    kind = env_choice("MEDIA_STORAGE", "local", {"local", "s3"})
    if kind == "local":
        if presigned_seconds:
            raise ImproperlyConfigured(
                "MEDIA_PRESIGNED_SECONDS needs MEDIA_STORAGE=s3 (a folder has no URLs)"
            )
        return kind, LOCAL_BACKEND
    bucket = env_optional_str("S3_BUCKET")
    if bucket is None:
        raise ImproperlyConfigured("S3_BUCKET must be set when MEDIA_STORAGE=s3")
    sse = S3_SSE_CHOICES[env_choice("S3_SSE", "AES256", set(S3_SSE_CHOICES))]
    return kind, s3_backend(
        bucket=bucket,
        endpoint_url=env_optional_str("S3_ENDPOINT_URL"),
        region=env_optional_str("S3_REGION"),
        access_key=env_optional_str("S3_ACCESS_KEY_ID"),
        secret_key=env_optional_str("S3_SECRET_ACCESS_KEY"),
        sse=sse,
        kms_key_id=env_optional_str("S3_SSE_KMS_KEY_ID"),
        presigned_seconds=presigned_seconds,
    )


def presigned_seconds() -> int:
    """MEDIA_PRESIGNED_SECONDS: 0 (default) streams downloads through the web process; > 0 answers
    a permitted download with a redirect to a presigned URL valid that long (S3 only)."""
    seconds = env_int("MEDIA_PRESIGNED_SECONDS", 0, minimum=0)
    if seconds > 3600:
        raise ImproperlyConfigured(f"MEDIA_PRESIGNED_SECONDS must be <= 3600 (short-lived), got {seconds}")
    return seconds
