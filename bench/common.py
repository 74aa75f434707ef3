"""What every benchmark shares: the machine description, load averages, memory sampling, results files.

No torch import at module level: the platform benchmarks run without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import platform
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHECKPOINTS = {
    "tiny": REPO_ROOT / "data" / "checkpoints" / "tiny",
    "2b": REPO_ROOT / "data" / "checkpoints" / "2b",
}

TARGETS = {
    "end_to_end_speedup": 6.0,  # seed table, baseline / ours at our defaults
    "decode_floor_fraction": 0.85,  # floor / measured seconds per token
    "prefix_ttft_ratio": 10.0,  # recompute TTFT / cached TTFT
    # 8 concurrent / one at a time, aggregate tokens/s (text-only, and with an image each)
    "batch8_throughput_ratio": 4.0,
    "batch8_image_throughput_ratio": 2.5,
}


def resolve_checkpoint(name: str) -> Path:
    """`tiny`, `2b` or a folder."""
    path = CHECKPOINTS.get(name, Path(name))
    if not path.is_dir():
        hint = (
            f"python -m vision.engine.testing.checkpoint --size {name} {path}" if name in CHECKPOINTS else ""
        )
        raise SystemExit(f"checkpoint folder {path} does not exist. {hint}".strip())
    return path


def checkpoint_tag(args) -> str:
    """The results file suffix: `--tag`, else the checkpoint's name (`2b`, `tiny`, a folder's name)."""
    return args.tag or args.checkpoint.rstrip("/").split("/")[-1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size now, from /proc (no psutil dependency)."""
    path = f"/proc/{pid or 'self'}/statm"
    pages = int(Path(path).read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def free_memory(*_objects: object) -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise), so the
    next phase's RSS starts from what is really live."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRss:
    """Samples this process's RSS every `interval` s in a thread; `.peak` is the max seen.

    getrusage's ru_maxrss is the high-water mark of the whole process life, useless once an earlier
    phase held a bigger model; sampling gives a peak per phase / per row.
    """

    def __init__(self, interval: float = 0.05, pid: int | None = None):
        self.interval = interval
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, ValueError, IndexError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def peak_mib(self) -> float:
        return round(self.peak / 2**20, 1)


@dataclass
class RunInfo:
    """Context every results file carries, so a reader can judge the numbers."""

    command: str
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    loadavg_start: list[float] = field(default_factory=loadavg)
    loadavg_end: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    git_commit: str = ""
    machine: dict = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def start(cls, argv: list[str]) -> RunInfo:
        """A run of `python -m bench <argv>` at the current commit, starting now."""
        return cls(command="python -m bench " + " ".join(argv), git_commit=git_commit())

    @classmethod
    def from_dict(cls, run: dict) -> RunInfo:
        """A finished run back from its JSON (`to_dict`), for rendering its Markdown again."""
        known = {k: v for k, v in run.items() if k in cls.__dataclass_fields__ and k != "_t0"}
        return cls(**known)

    def finish(self) -> None:
        self.loadavg_end = loadavg()
        self.duration_s = round(time.monotonic() - self._t0, 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("_t0")
        return data


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_description(bandwidth_gbs: float | None = None) -> dict:
    """CPU model, the ISA flags that pick kernels, cores, LLC, RAM, torch/transformers versions.

    Imports torch (through vision.engine.cpuinfo) only when called.
    """
    from vision.engine.cpuinfo import cpu_description

    cpu = cpu_description()
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    desc = {
        "cpu_model": cpu.model_name,
        "flags": {
            flag: cpu.has(flag) for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
        },
        "logical_cores": cpu.logical_cores,
        "physical_cores": cpu.physical_cores,
        "llc_mib": round(cpu.llc_bytes / 2**20, 1),
        "ram_gib": round(int(meminfo[1]) / 2**20, 1),
        "torch": cpu.torch_version,
        "python": platform.python_version(),
    }
    try:
        import transformers

        desc["transformers"] = transformers.__version__
    except ImportError:
        pass
    if bandwidth_gbs is not None:
        desc["bandwidth_gbs"] = round(bandwidth_gbs, 2)
    return desc


def machine_markdown(machine: dict) -> str:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in machine.get("flags", {}).items())
    bw = machine.get("bandwidth_gbs")
    bw_text = f"; memory read bandwidth {bw} GB/s" if bw is not None else ""
    return (
        f"Machine: {machine.get('cpu_model')}, {machine.get('physical_cores')} physical / "
        f"{machine.get('logical_cores')} logical cores, LLC {machine.get('llc_mib')} MiB, "
        f"RAM {machine.get('ram_gib')} GiB{bw_text}. Flags: {flags}. "
        f"torch {machine.get('torch')}, transformers {machine.get('transformers', '-')}."
    )


def run_markdown(run: RunInfo) -> str:
    return (
        f"Run: `{run.command}` at {run.started} (commit {run.git_commit or '?'}), {run.duration_s} s; "
        f"load average (1/5/15 min) at start {run.loadavg_start}, at end {run.loadavg_end}. "
        "The two cores are shared with other processes; ratios come from runs interleaved in one process, "
        "absolute seconds are noisier."
    )


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    for row in rows:  # a row longer or shorter than the header shifts every later column
        if len(row) != len(headers):
            raise ValueError(f"table row has {len(row)} cells for {len(headers)} headers: {row[:3]}...")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str, tag: str, data: dict, markdown: str, out_dir: Path | None = None
) -> tuple[Path, Path]:
    """`<out>/<name>-<tag>.json` and `.md`; returns both paths."""
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{tag}" if tag else name
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def publish(name: str, tag: str, data: dict, markdown: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """`write_results`, then the Markdown and where both files went, on stdout."""
    json_path, md_path = write_results(name, tag, data, markdown, out_dir)
    print(markdown)
    print(f"[bench] wrote {json_path} and {md_path}")
    return json_path, md_path


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= target else "MISSED"
