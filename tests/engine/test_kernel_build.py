"""Building the kernels survives a builder that was killed: torch's `lock` file left behind by a
killed build is cleared by the next builder (which holds an flock that dies with its holder), and
two processes starting together build once."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vision.engine import kernels


def test_a_lock_left_by_a_killed_build_is_cleared(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = kernels.build_directory()
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what a build killed mid-way leaves: torch would wait on it forever
    compiled = []

    def compile_(name: str, where: Path):
        compiled.append((name, where, (where / "lock").exists()))
        return "module"

    monkeypatch.setattr(kernels, "_compile", compile_)
    assert kernels._build() == "module"
    assert compiled == [(compiled[0][0], folder, False)]
    assert not (folder / "lock").exists()


def test_a_second_builder_waits_for_the_first_and_its_flock_dies_with_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = kernels.build_directory()
    folder.mkdir(parents=True)
    # Another process holds the build flock, then is killed without releasing it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, time
                handle = open({str(folder / "build.flock")!r}, "w")
                fcntl.flock(handle, fcntl.LOCK_EX)
                open({str(folder / "held")!r}, "w").close()
                time.sleep(60)
                """
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not (folder / "held").exists():
            assert time.monotonic() < deadline, "the holder never took the flock"
            time.sleep(0.05)
        with open(folder / "build.flock", "w") as probe:  # held: a non-blocking try fails
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the flock should be held by the other process")
            except BlockingIOError:
                pass
        holder.kill()
        holder.wait(10)
        monkeypatch.setattr(kernels, "_compile", lambda name, where: "module")
        assert kernels._build() == "module"  # the killed holder's flock is gone: no wait
    finally:
        holder.kill()
