"""A private DocPlatform stack for the platform benches: Redis, migrations, an admin, one Celery vision
worker and one uvicorn process, from this checkout, on loopback and free ports, in a throwaway data
folder. Stopped by the pids it started, never by name."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import web_command

from .common import REPO_ROOT, resolve_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """Processes this bench started; stopped by their own pids only."""

    base_url: str
    data_dir: Path
    env: dict
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list = field(default_factory=list)

    @property
    def web_pid(self) -> int | None:
        proc = self.procs.get("web")
        return proc.pid if proc else None

    def start(self, name: str, command: list[str]) -> None:
        log = (self.data_dir / f"{name}.log").open("wb")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.data_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def start_stack(args: argparse.Namespace, concurrency: int) -> tuple[Stack, str]:
    """Redis + migrate + admin + worker + web; returns the stack and an API key."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    data_dir = Path(tempfile.mkdtemp(prefix="docplatform-bench-"))
    redis_port, web_port = _free_port(), _free_port()
    password = secrets.token_urlsafe(16)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "DATA_DIR": str(data_dir),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "VISION_MODEL": str(checkpoint),
        "VISION_DTYPE": args.dtype,
        "ADMIN_PASSWORD": password,
        "THROTTLE_ANON_RATE": "off",
        "THROTTLE_USER_RATE": "off",
        "ANSWER_CACHE_ENABLED": "false",  # every request must reach the engine
        "OPENAI_MAX_PENDING": str(max(64, concurrency * 2)),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_ENV", None)
    stack = Stack(base_url=f"http://127.0.0.1:{web_port}", data_dir=data_dir, env=env)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("redis-server is not installed (scripts/start.sh installs it)")
    stack.start(
        "redis",
        [
            redis_server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
    )
    python = sys.executable
    for step in (["migrate", "--noinput"], ["ensure_admin"]):
        done = subprocess.run(
            [python, "manage.py", *step], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            stack.stop()
            raise RuntimeError(
                f"manage.py {' '.join(step)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    stack.start(
        "worker",
        # Task threads up to the engine's own queue bound (EngineConfig.max_waiting, 64): more
        # would take messages only to be refused; the rest wait in Redis.
        [
            python,
            "-m",
            "celery",
            "-A",
            "docplatform",
            "worker",
            "-P",
            "threads",
            "-Q",
            "vision",
            "-c",
            str(min(max(4, concurrency), 48)),
            "-n",
            f"bench-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
    )
    stack.start(
        "web",
        web_command(web_port, "--log-level", "warning", python=python),
    )
    try:
        _wait_ready(stack, args.ready_timeout)
        key = _api_key(stack.base_url, "admin", password)
    except BaseException:
        stack.stop()
        raise
    return stack, key


def _wait_ready(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            r = httpx.get(stack.base_url + "/readyz", timeout=5)
            last = f"{r.status_code} {r.text[:300]}"
            if r.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise RuntimeError(f"platform not ready after {timeout} s: {last}")


def _api_key(base_url: str, username: str, password: str) -> str:
    r = httpx.post(
        base_url + "/api/auth/token/", json={"username": username, "password": password}, timeout=30
    )
    r.raise_for_status()
    access = r.json()["access"]
    r = httpx.post(
        base_url + "/api/auth/keys/",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["key"]
