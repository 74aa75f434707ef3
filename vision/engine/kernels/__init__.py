"""The engine's own CPU kernels: int8 and int4 weight-only linears that read weights at memory speed.

Why our own: torch's `_weight_int8pack_mm` turns every weight into fp32 and multiplies in fp32
tiles (no VNNI, no AMX): ~12-19 GB/s of weights at M=1 where DRAM gives ~30, 2.3x the M=1 cost
at M=8, and a GEMV per row for prefill. Inductor's weight-only int8 templates and the oneDNN paths
torch exposes were measured too (bench `kernels`, docs/benchmarks.md); none met the targets. So, as llama.cpp
does (Q8_0 activations, `ggml-cpu/repack.cpp`):

- weights are repacked once at load into panels of 16 output columns x 4 consecutive k (the
  operand of one `vpdpbusd`), stored +128 as unsigned bytes;
- each call quantizes the activation rows to int8 once, one fp32 scale per block of 32 along K
  (the per-channel weight scale factors out), and keeps -128 * sum(block) to cancel the +128;
- integer dot products per block (AVX-512 VNNI `_mm512_dpbusd_epi32`, AVX-VNNI
  `_mm256_dpbusd_avx_epi32`, plain AVX2 `vpmaddubsw` with llama.cpp's sign trick, scalar C++),
  converted and scaled to fp32 per block; one tile serves up to 8 rows, so a decode step of 8
  sequences reads every weight once; parallel over column panels with torch's threads.

int4 (`linear4`) is llama.cpp's Q4_0 x Q8_0 dot in the same panels: weights symmetric 4-bit
round-to-nearest with one fp32 scale per output column per block of 32 along K (the activation
block, so the two scales multiply per block), stored q + 8 two per byte: one 64-byte load holds
two k-groups of a 16-column panel (low and high nibbles, split with and/shift), and the +8 cancels
with the activation block sum as int8's +128 does (`packing.pack_int4`, `packing.quantize_int4`).

Every vector path gives bit-identical results (the integer dots are exact, the fp32 sums run in
the same order), equal to the scalar path. All ISA files are built into one library with
per-function target pragmas. One decision says which path every op takes: `isa()`, an `Isa`
made from the CPU's flags (/proc/cpuinfo) and `VISION_KERNEL_ISA` (`ref`, `avx2`, `avxvnni`,
`avx512vnni`, `torch`: forces a lower one, for tests, benchmarks and diagnosis; like
ONEDNN_MAX_CPU_ISA it is a kernel knob, not an engine setting), or `use_isa` inside a block. The
C++ never reads cpuid: every op gets the path as an argument from the wrappers here, so a forced
path changes every kernel (linears, RMSNorm, decode and prefill attention, the vision GELU and
rotary), and one machine can run the paths a smaller CPU would take.

More ops serve the runner's bf16 decode step (docs/engine.md): `rms_norm_bf16` (RMSNorm in one
call, F.rms_norm's arithmetic), `decode_attention` (each decoding row against its own KV-arena
slot; AVX-512F or AVX2 + FMA, `attn_impl.h`; `Isa.attention` says which runs),
`add_rms_norm_bf16` (the residual add with the RMSNorm after it) and `decode_qk_rope_store` (the
decode rows' q/k norms, rotary and KV writes). The last two give the same bits as the separate
ops they replace (tests); their elementwise loops run on AVX-512F/BW on the avx512vnni path
(`fused_avx512.cpp`), scalar C++ on the others. `gelu_tanh_` is the quantized vision towers' MLP
activation (fp32, in place, same file), and `vision_qkv_rope_bf16` their blocks' rotary and bf16
rounding of q, k and v for the prefill attention.

Build: `torch.utils.cpp_extension.load` compiles the sources on first use (g++ and ninja; about a
minute) into `$XDG_CACHE_HOME/docplatform/kernels/<torch>-<source hash>/` (default
`~/.cache`), reused by later processes. Without a compiler, or when the build fails, the engine
logs one warning; its int8 layers use torch's `_weight_int8pack_mm` and its int4 layers torch's
`_weight_int4pack_mm_for_cpu` (asymmetric, group 64).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from .packing import (  # noqa: F401  (the weight layouts, re-exported with the ops)
    BLOCK,
    BLOCK_BYTES4,
    PANEL,
    pack_int4,
    pack_int8,
    pad_to_panels,
    quantize_int4,
    unpack_int4,
    unpack_int8,
)

log = logging.getLogger(__name__)

# Index = the C++ enum in csrc/ops.h. Best last.
ISAS: tuple[str, ...] = ("ref", "avx2", "avxvnni", "avx512vnni")
TORCH_OP = "torch"  # not ours: torch's packed op, what runs when the build is unavailable
ISA_ENV = "VISION_KERNEL_ISA"

_SRC = Path(__file__).with_name("csrc")
# binding.cpp binds the operators of ops.h, which the ops_*.cpp files implement by kind over the
# kernels that vk.h declares (the other files, each compiled for its own instruction set).
_SOURCES = (
    "binding.cpp",
    "ops_linear.cpp",
    "ops_fused.cpp",
    "ops_attention.cpp",
    "ops_threads.cpp",
    "isa_avx512vnni.cpp",
    "isa_avxvnni.cpp",
    "isa_avx2.cpp",
    "isa_ref.cpp",
    "attn_avx512.cpp",
    "attn_avx2.cpp",
    "flash_avx512bf16.cpp",
    "gemv_bf16.cpp",
    "fused_avx512.cpp",
    "fused_avx2.cpp",
)
_HEADERS = ("ops.h", "vk.h", "tile_impl.h", "quant_impl.h", "attn_impl.h")
# -fopenmp is what makes at::parallel_for parallel: ATen's header runs the loop serially in a
# library compiled without it. libgomp.so.1 resolves to the copy torch already loaded (same
# soname), so the kernels share torch's thread pool and follow torch.set_num_threads.
_CFLAGS = ("-O3", "-std=c++17", "-fopenmp")
_LDFLAGS = ("-fopenmp",)

_lock = threading.RLock()  # isa() holds it while _choose builds the module
_state: dict[str, object] = {}  # "module": ModuleType | None once tried, "isa": the chosen Isa
_forced: list[Isa] = []  # use_isa() stack

# What each path needs, by /proc/cpuinfo's flag names (the C++ files' target pragmas).
NEEDS: dict[str, frozenset[str]] = {
    "ref": frozenset(),
    "avx2": frozenset({"avx2", "fma"}),
    "avxvnni": frozenset({"avx2", "fma", "avx_vnni"}),
    "avx512vnni": frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}),
}
BF16_NEEDS = frozenset({"avx512_bf16"})  # beyond avx512vnni: the prefill attention and bf16 GEMV


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags as Linux reports them (/proc/cpuinfo, the first CPU): what
    the kernel path is decided from. Empty where there is no /proc/cpuinfo (then only `ref` runs)."""
    if "flags" not in _state:
        flags: frozenset[str] = frozenset()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                    break
        except OSError:
            pass
        _state["flags"] = flags
    return _state["flags"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Isa:
    """The one instruction-set decision: which path every kernel takes. `name` is one of ISAS, or
    "torch" (torch's ops everywhere: none of ours). The C++ ops receive `index` (linears, int8
    peak, the elementwise loops: AVX-512F/BW on avx512vnni, scalar C++ below it), `attention`
    (decode attention) and run the AVX-512 BF16 ops only where `bf16` is true."""

    name: str
    bf16: bool = False  # AVX-512 BF16 ops (prefill attention, bf16 GEMV): avx512vnni + avx512_bf16

    @property
    def ours(self) -> bool:
        """Our kernels run (False: torch's ops, as where the build failed)."""
        return self.name != TORCH_OP

    @property
    def index(self) -> int:
        """The C++ enum (csrc/ops.h Isa): ISAS.index(name)."""
        if not self.ours:
            raise ValueError("the torch path runs none of our kernels")
        return ISAS.index(self.name)

    @property
    def attention(self) -> int:
        """The decode attention's path: 3 (AVX-512F) on avx512vnni, 1 (AVX2 + FMA) on avx2 and
        avxvnni, 0 (none: SDPA) on ref and torch."""
        return {"avx512vnni": 3, "avx2": 1, "avxvnni": 1}.get(self.name, 0)

    @property
    def vision_vector(self) -> bool:
        """The vision tower's GELU and rotary/qkv rounding have a vector loop on this path (AVX-512F);
        elsewhere their scalar C++ (a scalar exp per GELU value) is slower than torch's ops, which
        then run instead."""
        return self.name == "avx512vnni"

    @property
    def rope_vector(self) -> bool:
        """The vision rotary/qkv rounding has a vector loop on this path: AVX-512F on avx512vnni,
        AVX2 on avx2 and avxvnni (fused_avx2.cpp), the same bits as the scalar code."""
        return self.name in ("avx2", "avxvnni", "avx512vnni")


def cpu_isas(flags: frozenset[str] | None = None) -> list[str]:
    """The paths a CPU with these flags (default: this one's) can execute, lowest first."""
    have = cpu_flags() if flags is None else flags
    return [name for name in ISAS if NEEDS[name] <= have]


def make_isa(name: str, flags: frozenset[str] | None = None) -> Isa:
    """The decision for path `name` on a CPU with these flags (default: this one's)."""
    have = cpu_flags() if flags is None else flags
    return Isa(name, bf16=name == "avx512vnni" and have >= BF16_NEEDS)


def build_directory() -> Path:
    """Where the compiled library lives: per torch version and per source content."""
    digest = hashlib.sha256(" ".join(_CFLAGS + _LDFLAGS).encode())
    for name in _SOURCES + _HEADERS:
        digest.update((_SRC / name).read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    version = torch.__version__.replace("+", "_")
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "docplatform" / "kernels" / f"torch-{version}-{python}-{digest.hexdigest()[:12]}"


def _import_built(name: str, folder: Path) -> ModuleType | None:
    """The library a previous process built for these sources, without asking ninja.

    cpp_extension rebuilds whenever the compiler command line differs (another venv path, another
    environment), and two such processes would rebuild in turn; the folder name already pins the
    sources, torch and Python, so an existing library is the right one.
    """
    so = folder / f"{name}.so"
    if not so.exists():
        return None
    spec = importlib.util.spec_from_file_location(name, so)
    if spec is None or spec.loader is None:
        return None
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except ImportError as exc:  # half-written by a concurrent build, or stale: build again
        log.info("rebuilding engine kernels (%s)", exc)
        return None
    return mod


def _build() -> ModuleType | None:
    folder = build_directory()
    name = "docplatform_kernels_" + folder.name.rsplit("-", 1)[-1]
    folder.mkdir(parents=True, exist_ok=True)
    built = _import_built(name, folder)
    if built is not None:
        return built
    # One builder at a time across processes (a worker and a test run start together). torch's
    # own `lock` file outlives a builder that is killed, and then every later build waits on it
    # forever; an flock is released by the kernel when its holder dies, so while it is held any
    # torch lock left in the folder is stale and goes.
    with open(folder / "build.flock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        built = _import_built(name, folder)  # the process we waited for may have built it
        if built is not None:
            return built
        (folder / "lock").unlink(missing_ok=True)
        return _compile(name, folder)


def _compile(name: str, folder: Path) -> ModuleType | None:
    from torch.utils.cpp_extension import load

    log.info("building the engine kernels in %s (about a minute, once)", folder)
    try:
        return load(
            name=name,
            sources=[str(_SRC / s) for s in _SOURCES],
            extra_cflags=list(_CFLAGS),
            extra_ldflags=list(_LDFLAGS),
            extra_include_paths=[str(_SRC)],
            build_directory=str(folder),
            verbose=False,
        )
    except Exception as exc:  # a missing compiler surfaces as OSError, RuntimeError, CalledProcessError...
        log.warning(
            "engine kernels unavailable (%s: %s); int8 layers use torch's _weight_int8pack_mm and int4 "
            "layers _weight_int4pack_mm_for_cpu, about 2x slower at decode. Install g++ and ninja to "
            "build them (cached in %s).",
            type(exc).__name__,
            str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else "",
            folder,
        )
        return None


def module() -> ModuleType | None:
    """The compiled kernels, built on first use; None (after one warning) when they cannot be."""
    if "module" not in _state:
        with _lock:
            if "module" not in _state:
                _state["module"] = _build()
    return _state["module"]  # type: ignore[return-value]


def supported_isas() -> list[str]:
    """Our paths this CPU can run, lowest first (empty when the kernels are unavailable)."""
    return [] if module() is None else cpu_isas()


def _choose() -> Isa:
    wanted = os.environ.get(ISA_ENV, "").strip().lower()
    if wanted == TORCH_OP:
        return Isa(TORCH_OP)
    runnable = supported_isas()
    if not runnable:
        return Isa(TORCH_OP)
    if wanted:
        if wanted in runnable:
            return make_isa(wanted)
        log.warning(
            "%s=%s: not one of this CPU's kernel paths %s; using %s", ISA_ENV, wanted, runnable, runnable[-1]
        )
    return make_isa(runnable[-1])


def isa() -> Isa:
    """The decision in force: `use_isa`'s inside its block, else the process's (cpuid and
    VISION_KERNEL_ISA, made once)."""
    if _forced:
        return _forced[-1]
    if "isa" not in _state:
        with _lock:
            if "isa" not in _state:
                _state["isa"] = _choose()
    return _state["isa"]  # type: ignore[return-value]


def active_isa() -> str:
    """The path's name: one of ISAS, or "torch" (torch's ops)."""
    return isa().name


def identity() -> str:
    """Which int8 implementation runs, for caches of timings: the path and the sources' hash.

    A verdict `autotune` measured on torch's op (or an older kernel) must not be reused for ours.
    """
    isa = active_isa()
    return isa if isa == TORCH_OP else f"{isa}-{build_directory().name.rsplit('-', 1)[-1]}"


@contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run int8 layers on path `name` inside the block (tests and benchmarks compare paths).

    Layers built inside the block on "torch" keep torch's layout; packed layers may switch between
    our paths freely, since they share the layout.
    """
    if name != TORCH_OP and name not in supported_isas():
        raise ValueError(f"kernel path {name!r} cannot run here; this CPU runs {supported_isas()}")
    _forced.append(make_isa(name) if name != TORCH_OP else Isa(TORCH_OP))
    try:
        yield
    finally:
        _forced.pop()


def isa_index(name: str) -> int:
    return ISAS.index(name)


# Prefill attention (csrc/flash_avx512bf16.cpp) takes at least this many query rows: below it the
# per-call packing of every key outweighs what the kernel saves over SDPA.
FLASH_MIN_ROWS = 16


@dataclass
class PackedKV:
    """Keys and values of one attention, packed once for `prefill_attention` (several calls over
    row pieces of the same block reuse it)."""

    keys: torch.Tensor
    values: torch.Tensor
    count: int  # keys before padding


def bf16_ops_available() -> bool:
    """Whether the AVX-512 BF16 ops (prefill attention, bf16 GEMV) run on the path in force
    (`Isa.bf16`: avx512vnni on a CPU with AVX-512 BF16; a path forced lower turns them off)."""
    return module() is not None and isa().bf16


def _need_bf16(op: str) -> ModuleType:
    mod = module()
    if mod is None or not isa().bf16:
        raise RuntimeError(f"{op}: the kernel path in force ({active_isa()}) has no AVX-512 BF16 ops")
    return mod


def flash_available(head_dim: int) -> bool:
    """Whether bf16 prefill attention of this head size runs on the kernels here."""
    return head_dim in (16, 32, 64, 128) and bf16_ops_available()


def pack_kv(keys: torch.Tensor, values: torch.Tensor) -> PackedKV:
    """keys, values: (kv_heads, nk, head_dim) bf16, last axis contiguous (strided views are fine)."""
    kp, vp = _need_bf16("attention_pack").attention_pack(keys, values)
    return PackedKV(kp, vp, keys.shape[1])


def prefill_attention(
    q: torch.Tensor, kv: PackedKV, scale: float, causal: int = -1, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention of q (heads, nq, head_dim) bf16 against packed keys/values: (nq, heads *
    head_dim) bf16, written into `out` when given. Query head h uses kv head h // (heads /
    kv_heads). causal -1: every key; else row i sees keys j <= i + causal. fp32 softmax; the
    weights are rounded to bf16 for the second product (as the first takes bf16 q and keys)."""
    mod = _need_bf16("prefill_attention")
    if out is None:
        out = torch.empty(q.shape[1], q.shape[0] * q.shape[2], dtype=torch.bfloat16)
    return mod.prefill_attention(q, kv.keys, kv.values, kv.count, scale, causal, out)


def linear_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """bf16 x (m, k) times weight (n, k) as nn.Linear keeps it, plus bias (n,) or an empty tensor,
    on the AVX-512 BF16 GEMV: (m, n) bf16. RuntimeError where the path in force lacks it."""
    return _need_bf16("linear_bf16").linear_bf16(x, weight, bias)


def rms_norm_bf16(x: torch.Tensor, w: torch.Tensor, eps: float, path: Isa | None = None) -> torch.Tensor:
    """RMSNorm of bf16 rows (2 or 3 dims, last axis contiguous) in F.rms_norm's arithmetic, one call,
    on path `path` (default: the one in force)."""
    return _built().rms_norm_bf16(x, w, eps, (path or isa()).index)


def add_rms_norm_bf16(
    hidden: torch.Tensor, delta: torch.Tensor, w: torch.Tensor, eps: float, path: Isa | None = None
) -> torch.Tensor:
    """hidden += delta in place (bf16), then rms_norm_bf16 of it, one call."""
    return _built().add_rms_norm_bf16(hidden, delta, w, eps, (path or isa()).index)


def decode_qk_rope_store(*args, path: Isa | None = None) -> torch.Tensor:
    """The decode rows' q/k RMSNorm, rotary and KV-arena writes in one call (csrc/ops_fused.cpp:
    qkv, q_norm, k_norm, cos, sin, keys, values, slots, positions, heads, kv_heads, eps); returns q."""
    return _built().decode_qk_rope_store(*args, (path or isa()).index)


def decode_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    slots: torch.Tensor,
    lens: torch.Tensor,
    scale: float,
    path: Isa | None = None,
) -> torch.Tensor:
    """Each decoding row against its own KV-arena slot (csrc/ops_attention.cpp), on `Isa.attention`;
    RuntimeError on a path without one (ref, torch)."""
    return _built().decode_attention(q, keys, values, slots, lens, scale, (path or isa()).attention)


def _built() -> ModuleType:
    mod = module()
    if mod is None:
        raise RuntimeError("the engine kernels are unavailable (see the warning logged at first use)")
    return mod


def gelu_tanh_(x: torch.Tensor, path: Isa | None = None) -> torch.Tensor | None:
    """GELU's tanh approximation (transformers' `gelu_pytorch_tanh`) of a contiguous fp32 tensor,
    in place, on the kernels; None (x untouched) where they did not build, the path has no vector
    loop for it (`Isa.vision_vector`: torch's op is faster than scalar C++) or x is not contiguous
    fp32. Within 1e-6 relative of the exact function (torch's own tanh form is off by up to 5e-5:
    it cancels where tanh -> -1); 2.3 -> 0.5 ms for a vision MLP's 560 x 4096 values on two cores."""
    path = path or isa()
    if module() is None or not path.vision_vector or x.dtype != torch.float32 or not x.is_contiguous():
        return None
    return module().gelu_tanh_(x, path.index)


def vision_qkv_rope_bf16(
    qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, path: Isa | None = None
) -> torch.Tensor | None:
    """A vision block's q and k with its rotary, and v, from the fp32 output of its fused qkv
    projection (rows, 3 * heads * d), as one (3, rows, heads, d) bf16 tensor: the same bits as
    transformers' `apply_rotary_pos_emb_vision` then `.bfloat16()`, in one call. None where the
    kernels did not build, the path has no vector loop for it (`Isa.rope_vector`: ref) or the
    inputs are not contiguous fp32."""
    path = path or isa()
    tensors = (qkv, cos, sin)
    if module() is None or not path.rope_vector:
        return None
    if any(t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
        return None
    return module().vision_qkv_rope_bf16(qkv, cos, sin, heads, path.index)


def release_thread_pool(build: bool = True) -> bool:
    """Free the calling thread's OpenMP thread pool, if it has one (the kernels' libgomp is the one
    torch uses). Call it in a thread that ran torch's or our parallel ops and hands the compute to
    another thread: while libgomp manages more threads than there are CPUs it shortens every
    team's spin-wait to 1,000 rounds, so an idle pool left in the loading thread makes the engine
    thread's int8 linear ~1.3-1.5x slower on two cores (its worker sleeps between calls). True when
    freed (or nothing to free); False without the kernels or inside a parallel region.
    `build=False`: only if the kernels are already loaded (never compiles in the caller's thread)."""
    built = module() if build else _state.get("module")
    return built is not None and built.release_thread_pool() == 0
