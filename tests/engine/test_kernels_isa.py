"""The kernels' path decision and its surroundings: the paths each CPU kind runs, CPU detection,
forcing a path (in the process and from the environment), the paths a CPU cannot run, the OpenMP
threads the ops use and release, the int8 dot-product peak, and the fallback to torch's op when
nothing can be built.

Kernel paths: tests of one op take the `kernel_path` fixture (tests/engine/conftest.py: each of
kernels.ISAS forced in turn, `ref` always; a path this CPU cannot execute is skipped with that
reason); tests that compare paths run every path in RUNNABLE against `ref` in one test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vision.engine import kernels
from vision.engine.linears import Int8Linear

from .kernel_helpers import _FLAGS, FLASH_CPU, INT4_BOUNDS, RUNNABLE, _case, _run_paths
from .test_quant import BOUNDS

REPO = Path(__file__).resolve().parents[2]

# The three CPU kinds the project's machines are drawn from, by the flags that matter here
# (/proc/cpuinfo names): what each runs.
CPU_KINDS = {
    "AMD EPYC, AVX2 only": ({"avx", "avx2", "fma", "sse4_2"}, ["ref", "avx2"], False),
    "AMD EPYC, AVX-512 VNNI + BF16": (
        {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"},
        ["ref", "avx2", "avx512vnni"],
        True,
    ),
    "Intel Xeon, AMX": (
        {
            "avx2",
            "fma",
            "avx_vnni",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512_vnni",
            "avx512_bf16",
            "amx_bf16",
            "amx_int8",
            "amx_tile",
        },
        ["ref", "avx2", "avxvnni", "avx512vnni"],
        True,
    ),
}


@pytest.mark.parametrize("kind", sorted(CPU_KINDS))
def test_one_decision_per_cpu_kind(kind: str) -> None:
    """kernels.Isa, from a CPU's flags: the paths each of the three CPU kinds runs, and what the
    best one turns on (the AVX-512 BF16 ops, the decode attention's path, the vision loops)."""
    flags, paths, bf16 = CPU_KINDS[kind]
    assert kernels.cpu_isas(frozenset(flags)) == paths
    best = kernels.make_isa(paths[-1], frozenset(flags))
    assert best.bf16 is bf16 and best.attention == (3 if bf16 else 1) and best.vision_vector is bf16
    for lower in paths[:-1]:
        isa = kernels.make_isa(lower, frozenset(flags))
        assert not isa.bf16 and not isa.vision_vector and isa.attention == (0 if lower == "ref" else 1)
    assert kernels.Isa("torch").attention == 0 and not kernels.Isa("torch").ours


def test_cpu_detection_agrees_with_proc_cpuinfo(built) -> None:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert flags == _FLAGS
    assert kernels.supported_isas() == RUNNABLE and RUNNABLE[0] == "ref"
    assert kernels.active_isa() == RUNNABLE[-1]  # the best path unless told otherwise
    assert kernels.isa().bf16 == ("avx512vnni" in RUNNABLE and "avx512_bf16" in flags)


def test_ops_use_torchs_threads(built) -> None:
    """The library shares torch's OpenMP pool: without -fopenmp ATen's parallel_for runs serially
    and every op here would use one core whatever torch.set_num_threads says."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert built.parallel_threads(64) == 2
        torch.set_num_threads(1)
        assert built.parallel_threads(64) == 1
    finally:
        torch.set_num_threads(before)


# multiply-adds per dot product of each path's tile: lanes x 4 bytes, times its independent chains
DOT_PEAK_MACS = {"avx2": 4 * 8 * 4, "avxvnni": 6 * 8 * 4, "avx512vnni": 12 * 16 * 4}


@pytest.mark.parametrize("isa", sorted(DOT_PEAK_MACS))
def test_int8_dot_peak_counts_every_threads_work(built, isa: str) -> None:
    """`int8_peak_gops` divides the loop's multiply-adds by its time: the count must be every
    thread's rounds (a loop left on one thread would halve the peak the batching bench states)."""
    from bench.machine import int8_peak_gops

    if isa not in RUNNABLE:
        assert int8_peak_gops(isa) is None  # never run where the CPU lacks it
        pytest.skip(f"this CPU lacks the {isa} kernel path")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert built.int8_dot_peak(kernels.isa_index(isa), 1000) == threads * 1000 * DOT_PEAK_MACS[isa]
        peak = int8_peak_gops(isa, seconds=0.02)
        assert peak is not None and peak > 0
    finally:
        torch.set_num_threads(before)
    assert int8_peak_gops("ref") is None
    with pytest.raises(RuntimeError, match="no int8 dot-product loop"):
        built.int8_dot_peak(kernels.isa_index("ref"), 10)


@pytest.mark.parametrize("isa", kernels.ISAS)
def test_paths_this_cpu_cannot_run_are_refused(built, isa: str) -> None:
    if isa in RUNNABLE:
        with kernels.use_isa(isa):
            assert kernels.active_isa() == isa
    else:
        with pytest.raises(ValueError, match="cannot run here"), kernels.use_isa(isa):
            pass


def test_a_forced_path_changes_every_kernel(built, kernel_path: str) -> None:
    """use_isa (VISION_KERNEL_ISA's block form) forces one decision for all ops: the linears' path,
    the decode attention's, the AVX-512 BF16 ops and the vision loops follow it."""
    isa = kernels.isa()
    assert isa == kernels.make_isa(kernel_path) and kernels.active_isa() == kernel_path
    assert isa.attention == {"ref": 0, "avx2": 1, "avxvnni": 1, "avx512vnni": 3}[kernel_path]
    assert kernels.bf16_ops_available() is (kernel_path == "avx512vnni" and FLASH_CPU)
    x = torch.randn(64, 32)
    assert (kernels.gelu_tanh_(x.clone()) is None) is (kernel_path != "avx512vnni")
    lin, xs = _case(40, 64, 3)
    assert torch.equal(Int8Linear.from_linear(lin)(xs), _run_paths(lin, xs)["ref"])


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600, check=False
    )


_LAYER_SCRIPT = """
import logging, torch
from torch import nn
logging.basicConfig(level=logging.WARNING)
from vision.engine import kernels
from vision.engine.quant import Int8Linear
torch.manual_seed(0)
lin = nn.Linear(256, 64); nn.init.normal_(lin.weight, std=0.02)
layers = [Int8Linear.from_linear(lin) for _ in range(2)]
x = torch.randn(3, 256)
y = layers[0](x); layers[1](x)
err = ((y - lin(x)).norm() / lin(x).norm()).item()
print(kernels.active_isa(), layers[0].packed_layout, round(err, 5))
"""


def test_fallback_to_torch_op_when_the_build_fails(tmp_path: Path) -> None:
    """No compiler (a fresh build folder and a compiler that does not exist): one warning, and
    the layer runs torch's op with its usual accuracy."""
    result = _python(_LAYER_SCRIPT, XDG_CACHE_HOME=str(tmp_path), CXX=str(tmp_path / "no-such-c++"))
    assert result.returncode == 0, result.stderr
    isa, packed, err = result.stdout.split()
    assert (isa, packed) == ("torch", "False")
    assert float(err) < BOUNDS["int8"]
    warnings = [line for line in result.stderr.splitlines() if "engine kernels unavailable" in line]
    assert len(warnings) == 1, result.stderr


@pytest.mark.parametrize("isa", ["torch", *RUNNABLE])
def test_isa_forced_from_the_environment(built, isa: str) -> None:
    result = _python(_LAYER_SCRIPT, **{kernels.ISA_ENV: isa})
    assert result.returncode == 0, result.stderr
    got, packed, err = result.stdout.split()
    assert (got, packed) == (isa, str(isa != "torch"))
    assert float(err) < BOUNDS["int8"]


_INT4_SCRIPT = """
import logging, torch
from torch import nn
logging.basicConfig(level=logging.WARNING)
from vision.engine import kernels
from vision.engine.quant import quantize_linear
torch.manual_seed(0)
lin = nn.Linear(256, 64); nn.init.normal_(lin.weight, std=0.02)
layer = quantize_linear(lin, "int4")
x = torch.randn(3, 256)
err = ((layer(x) - lin(x)).norm() / lin(x).norm()).item()
print(kernels.active_isa(), type(layer).__name__, layer.kernel_layout, round(err, 5))
"""


def test_int4_falls_back_to_torch_op_when_the_build_fails(tmp_path: Path) -> None:
    result = _python(_INT4_SCRIPT, XDG_CACHE_HOME=str(tmp_path), CXX=str(tmp_path / "no-such-c++"))
    assert result.returncode == 0, result.stderr
    isa, cls, packed, err = result.stdout.split()
    assert (isa, cls, packed) == ("torch", "Int4Linear", "False")
    assert float(err) < BOUNDS["int4"]
    warnings = [line for line in result.stderr.splitlines() if "engine kernels unavailable" in line]
    assert len(warnings) == 1 and "int4" in warnings[0], result.stderr


@pytest.mark.parametrize("isa", RUNNABLE)
def test_int4_isa_forced_from_the_environment(built, isa: str) -> None:
    result = _python(_INT4_SCRIPT, **{kernels.ISA_ENV: isa})
    assert result.returncode == 0, result.stderr
    got, cls, packed, err = result.stdout.split()
    assert (got, cls, packed) == (isa, "Int4Linear", "True")
    assert INT4_BOUNDS[0] < float(err) < INT4_BOUNDS[1]


def test_release_thread_pool_frees_the_calling_threads_openmp_workers(built) -> None:
    """A thread that ran a parallel op keeps an OpenMP pool (one worker per extra thread); with it
    left behind, libgomp manages more threads than CPUs and shortens every team's spin-waits.
    release_thread_pool() in that thread makes its workers exit (the process has fewer threads)."""
    import os
    import threading
    import time

    def tasks() -> int:
        return len(os.listdir("/proc/self/task"))

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: dict[str, object] = {}

    def work() -> None:
        torch.set_num_threads(2)
        x = torch.ones(1 << 24)
        assert built.parallel_threads(64) == 2  # this thread's pool now has its worker
        x.sum()
        seen["with_pool"] = tasks()
        seen["released"] = kernels.release_thread_pool()
        deadline = time.monotonic() + 5
        while tasks() >= seen["with_pool"] and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["after"] = tasks()

    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(previous)
    assert seen["released"] is True
    assert seen["after"] < seen["with_pool"], seen
