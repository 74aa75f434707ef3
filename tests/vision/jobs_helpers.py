"""Helpers for tests that run jobs through the real worker started by scripts/test.sh."""

from __future__ import annotations

import time

import pytest

from vision.models import FINISHED_STATUSES


def wait_finished(api_client, url: str, *, timeout: float = 180) -> dict:
    """Poll a job's status URL until it finished; fail with the last body on timeout."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = api_client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        if body["status"] in FINISHED_STATUSES:
            return body
        time.sleep(0.3)
    pytest.fail(f"job did not finish within {timeout} s: {body}")


def wait_status(api_client, url: str, statuses: set[str], *, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = api_client.get(url).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    pytest.fail(f"job never reached {statuses} within {timeout} s: {body}")
