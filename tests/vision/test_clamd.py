"""Virus scanning against a REAL clamd, started here with a one-signature database of our own
(matching the EICAR test string; no virus database can be downloaded here)."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.vision import files
from vision.clamd import ClamdAddress, clamd_instream
from vision.models import Document

SIGNATURE = "DocPlatform.Test.EICAR"


@pytest.fixture(scope="module")
def clamd_socket(tmp_path_factory) -> str:
    binary = shutil.which("clamd") or "/usr/sbin/clamd"
    if not Path(binary).exists():
        pytest.fail("clamd is not installed (scripts/test.sh installs clamav-daemon)")
    root = tmp_path_factory.mktemp("clamd")
    (root / "db").mkdir()
    # An .ndb body signature: matches the EICAR string anywhere in a file.
    (root / "db" / "docplatform.ndb").write_text(
        f"{SIGNATURE}:0:*:{b'EICAR-STANDARD-ANTIVIRUS-TEST-FILE'.hex()}\n"
    )
    sock = root / "clamd.sock"
    (root / "clamd.conf").write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {root / 'db'}\nForeground yes\n"
        f"LogFile {root / 'clamd.log'}\nTemporaryDirectory {root}\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(root / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(sock))
                client.sendall(b"zPING\0")
                if client.recv(16).startswith(b"PONG"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (root / "clamd.log").read_text() if (root / "clamd.log").exists() else ""
            process.kill()
            pytest.fail(f"clamd did not start: {log[-2000:]}")
        time.sleep(0.2)
    yield str(sock)
    process.terminate()
    process.wait(timeout=10)


def test_client_speaks_instream(clamd_socket):
    address = ClamdAddress(socket_path=clamd_socket)
    assert clamd_instream(address, files.image_bytes("PNG"), timeout=10).infected is False
    found = clamd_instream(address, files.EICAR * 3000, timeout=10)  # > one 64 KiB chunk
    assert found.infected and found.signature.startswith(SIGNATURE)


def _upload_png(api_client):
    return api_client.post(
        "/api/documents",
        {"file": SimpleUploadedFile("dog.png", files.image_bytes("PNG"))},
        format="multipart",
    )


@pytest.mark.django_db
def test_infected_upload_is_refused_naming_the_signature(
    api_client, user_factory, settings, tmp_path, clamd_socket
):
    """GIVEN a real PNG carrying the EICAR string in a text chunk THEN the upload is 422 naming
    the signature, and nothing is stored; a clean image still passes the scan."""
    settings.CLAMD_SOCKET = clamd_socket
    settings.MEDIA_ROOT = tmp_path / "media"
    api_client.force_authenticate(user_factory())

    infected = api_client.post(
        "/api/documents",
        {"file": SimpleUploadedFile("cat.png", files.png_with_text(files.EICAR))},
        format="multipart",
    )
    clean = api_client.post(
        "/api/documents",
        {"file": SimpleUploadedFile("dog.png", files.image_bytes("PNG"))},
        format="multipart",
    )

    assert infected.status_code == 422, infected.content
    assert infected.json()["code"] == "virus_found"
    assert SIGNATURE in infected.json()["detail"]
    assert clean.status_code == 201
    assert Document.objects.count() == 1


@pytest.mark.django_db
def test_unreachable_clamd_is_503_and_stores_nothing(api_client, user_factory, settings, tmp_path):
    settings.CLAMD_SOCKET = str(tmp_path / "no-such.sock")
    settings.MEDIA_ROOT = tmp_path / "media"
    api_client.force_authenticate(user_factory())

    response = _upload_png(api_client)

    assert response.status_code == 503
    assert response.json()["code"] == "virus_scanner_unavailable"
    assert response["Retry-After"]
    assert Document.objects.count() == 0
    assert not (tmp_path / "media").exists() or not any(p.is_file() for p in (tmp_path / "media").rglob("*"))


@pytest.mark.django_db
def test_tcp_clamd_unreachable_is_503(api_client, user_factory, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CLAMD_SOCKET = None
    settings.CLAMD_HOST = "127.0.0.1"
    settings.CLAMD_PORT = port
    api_client.force_authenticate(user_factory())

    response = _upload_png(api_client)

    assert response.status_code == 503
