"""The web process never imports torch, transformers or the engine's heavy modules
(docs/architecture.md); it does import the engine's contract."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = r"""
import asyncio, json, sys

from docplatform.asgi import application  # sets up Django
import django.urls
import docplatform.urls, vision.tasks, vision.worker, vision.health

async def call(path):
    sent = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected
    async def send(message):
        sent.append(message)
    await application(scope, receive, send)
    return sent[0]["status"]

statuses = [asyncio.run(call(path)) for path in ("/healthz", "/readyz", "/api/auth/me/", "/login/", "/api/schema/")]
import vision.engine.constraints, vision.engine.contract  # the engine's contract, for the web side
heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
engine = sorted(name for name in sys.modules if name.startswith("vision.engine."))
print(json.dumps({"statuses": statuses, "heavy": heavy, "engine": engine}))
"""

# The engine modules the web process may load: the package (its __init__ is light), the contract
# and the plain types. Everything else in vision.engine is the engine proper (torch, the kernels).
LIGHT_ENGINE_MODULES = {
    "vision.engine.config",
    "vision.engine.constraints",
    "vision.engine.contract",
    "vision.engine.cpuinfo",
    "vision.engine.errors",
    "vision.engine.types",
}


def test_web_process_does_not_import_torch():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "docplatform.settings"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], report
    assert report["statuses"][0] == 200, report
    assert "vision.engine.contract" in report["engine"], report
    assert set(report["engine"]) <= LIGHT_ENGINE_MODULES, report
