"""Fixtures of the vision tests."""

import pytest

from tests.vision.s3 import use_s3


@pytest.fixture
def s3_media(settings, tmp_path):
    """Media in the test bucket of scripts/test.sh; MEDIA_ROOT names a folder that does not exist
    (a test checks it still does not: nothing was written to the local disk)."""
    settings.MEDIA_ROOT = tmp_path / "no-media-here"
    use_s3(settings)
    return settings
