"""What CPU we run on, as far as number-format choices care.

The fastest weight format differs between the CPUs this project runs on (see docs/architecture.md,
"Engine defaults on CPU"), so `autotune` caches its verdict per `CpuInfo.key`: same model name,
same relevant ISA flags and same torch build give the same kernels and the same answer. The
physical-core count is also the default thread count, which the settings read in the web process:
this module imports torch only inside `cpu_description`.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

# Flags that change which matmul kernels torch/oneDNN pick: bf16 dot products (avx512_bf16,
# amx_bf16), int8 dot products (avx512_vnni, avx_vnni, amx_int8), and the vector width.
RELEVANT_FLAGS: tuple[str, ...] = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)

_CPU_SYSFS = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class CpuInfo:
    model_name: str  # /proc/cpuinfo "model name" (VMs often say just "AMD EPYC")
    flags: frozenset[str] = field(default_factory=frozenset)  # only RELEVANT_FLAGS that are present
    logical_cores: int = 1  # os.cpu_count(): what the scheduler may hand us
    physical_cores: int = 1  # distinct (package, core) pairs: the default torch thread count
    llc_bytes: int = 0  # last-level cache of cpu0; 0 if sysfs does not say
    torch_version: str = ""  # kernels change between torch builds

    @property
    def key(self) -> str:
        """Stable identifier for caching per-CPU verdicts (model + relevant flags + torch)."""
        flags = ",".join(f for f in RELEVANT_FLAGS if f in self.flags)
        return f"{self.model_name}|{flags}|torch-{self.torch_version}"

    def has(self, flag: str) -> bool:
        return flag in self.flags


def physical_cores() -> int:
    """Physical cores this process may run on: the default engine thread count (hyper-threads
    share one core's matmul units, so the engine gains nothing from them). Distinct (package,
    core) pairs of the allowed CPUs in sysfs; the allowed CPU count where sysfs is missing."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(len(allowed), 1)
        cores.add((package, core))
    return max(len(cores), 1)


def _read_proc_cpuinfo() -> tuple[str, set[str]]:
    model: str | None = None
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and model is None:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", flags


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * mult if digits.isdigit() else 0


def _llc_bytes() -> int:
    best_level, best_size = -1, 0
    for idx in (_CPU_SYSFS / "cpu0" / "cache").glob("index*"):
        try:
            level = int((idx / "level").read_text())
            kind = (idx / "type").read_text().strip()
            size = _parse_size((idx / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and level > best_level:
            best_level, best_size = level, size
    return best_size


def cpu_description() -> CpuInfo:
    """Describe this machine's CPU (Linux sysfs/procfs; degrades to defaults elsewhere)."""
    import torch

    model, flags = _read_proc_cpuinfo()
    logical = os.cpu_count() or 1
    return CpuInfo(
        model_name=model,
        flags=frozenset(f for f in RELEVANT_FLAGS if f in flags),
        logical_cores=logical,
        physical_cores=physical_cores(),
        llc_bytes=_llc_bytes(),
        torch_version=torch.__version__,
    )
