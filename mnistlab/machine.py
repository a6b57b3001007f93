"""What the machine decides, resolved once when training starts: bfloat16 or float32 for
`precision="auto"`, the thread count for `threads=0`, whether TensorFlow runs its oneDNN
operations (`onednn_ops=None`), and the CPU and oneDNN ISA to record.

Nothing here imports TensorFlow except `apply_threads` and `onednn_ops_running`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

from mnistlab.config import TrainConfig

# oneDNN's CPU ISA names, lowest first (ONEDNN_MAX_CPU_ISA takes these; DNNL_ is the older prefix).
ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
             "AVX512_CORE_BF16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16")
_ISA_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512", "AVX512_CORE_AMX": "AVX10_1_512_AMX",
                "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16", "ALL": None, "DEFAULT": None, "": None}
# Linux /proc/cpuinfo flags that enable each ISA (all of them needed).
_ISA_FLAGS = {
    "AVX10_1_512_AMX": {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f"},
    "AVX512_CORE_BF16": {"avx512_bf16", "avx512f", "avx512bw", "avx512vl"},
    "AVX512_CORE_VNNI": {"avx512_vnni", "avx512f", "avx512bw", "avx512vl"},
    "AVX512_CORE": {"avx512f", "avx512bw", "avx512vl", "avx512dq"},
    "AVX2_VNNI": {"avx_vnni", "avx2"},
    "AVX2": {"avx2", "fma"},
    "AVX": {"avx"},
    "SSE41": {"sse4_1"},
}
BF16_ISA = "AVX512_CORE_BF16"  # the lowest ISA on which oneDNN runs bfloat16 natively
# TensorFlow's switch for its oneDNN operations (convolutions, matmuls, batch norm as oneDNN
# primitives), read once when TensorFlow starts. mnistlab/__init__.py sets it to "1" unless the
# user has set it. Unset, TensorFlow (2.9 and later) turns them on only on CPUs with AVX-512 VNNI
# or newer; elsewhere its convolutions run as Eigen im2col + many small gemm calls, slower than
# oneDNN's own convolutions on AVX2 (`make bench` measures the article's code both ways).
ONEDNN_OPTS_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
TF_ONEDNN_DEFAULT_ISA = "AVX512_CORE_VNNI"


@functools.lru_cache(maxsize=None)
def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, frozenset]:
    """(model name, flags) of the first CPU in Linux's /proc/cpuinfo; ("unknown", {}) elsewhere."""
    try:
        text = open(cpuinfo).read()
    except OSError:
        return "unknown", frozenset()
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return (name.group(1).strip() if name else "unknown"), frozenset(flags.group(1).split() if flags else ())


def max_isa_setting(environ=os.environ) -> str | None:
    """The cap set by ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), normalised; None if unset.
    Raises ValueError for a value oneDNN does not know."""
    value = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    value = _ISA_ALIASES.get(value, value)
    if value is not None and value not in ISA_ORDER:
        raise ValueError(f"ONEDNN_MAX_CPU_ISA={value!r} is not an ISA oneDNN knows; use one of {', '.join(ISA_ORDER)}")
    return value


def onednn_isa(flags: frozenset | None = None, environ=os.environ) -> str:
    """The highest ISA oneDNN can use here: the CPU's best, capped by ONEDNN_MAX_CPU_ISA.
    Inferred from the CPU flags (`probe_onednn_isa` asks oneDNN itself)."""
    flags = cpu_info()[1] if flags is None else flags
    best = next((isa for isa, needed in _ISA_FLAGS.items() if needed <= flags), "SSE41")
    cap = max_isa_setting(environ)
    if cap is not None and ISA_ORDER.index(cap) < ISA_ORDER.index(best):
        return cap
    return best


def probe_onednn_isa(timeout: float = 120) -> str | None:
    """The ISA oneDNN reports (`ONEDNN_VERBOSE=1`, line "cpu,isa:...") for a convolution in a
    fresh TensorFlow process with this process's environment; None if it reports none."""
    code = ("import tensorflow as tf; tf.nn.conv2d(tf.ones((1, 8, 8, 1)), tf.ones((3, 3, 1, 4)), 1, 'SAME')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    match = re.search(r"cpu,isa:([^\n,]+)", out.stdout + out.stderr)
    return match.group(1).strip() if match else None


def bfloat16_hidden_by_cap(flags: frozenset | None = None, environ=os.environ) -> bool:
    """Whether ONEDNN_MAX_CPU_ISA hides this CPU's bfloat16 units from oneDNN (an AVX2 cap on a
    CPU that has them, as `ISA=avx2` imitates a laptop): oneDNN's bfloat16 kernels then cannot be
    created, and TensorFlow aborts the process."""
    flags = cpu_info()[1] if flags is None else flags
    has_units = ISA_ORDER.index(onednn_isa(flags, {})) >= ISA_ORDER.index(BF16_ISA)
    return has_units and ISA_ORDER.index(onednn_isa(flags, environ)) < ISA_ORDER.index(BF16_ISA)


def resolve_precision(requested: str, flags: frozenset | None = None, environ=os.environ) -> str:
    """"auto" -> "mixed_bfloat16" where oneDNN may use the CPU's bfloat16 units (an ISA at or
    above AVX512_CORE_BF16, after ONEDNN_MAX_CPU_ISA), else "float32"; others unchanged.
    On CPUs without those units bfloat16 is emulated and slower than float32. Raises ValueError
    for "mixed_bfloat16" where ONEDNN_MAX_CPU_ISA hides the CPU's bfloat16 units (the process
    would abort in oneDNN), with the fix."""
    if requested == "mixed_bfloat16" and bfloat16_hidden_by_cap(flags, environ):
        raise ValueError(f"precision=mixed_bfloat16 cannot run here: ONEDNN_MAX_CPU_ISA={max_isa_setting(environ)} "
                         "hides this CPU's bfloat16 units from oneDNN, whose bfloat16 kernels then fail and abort the "
                         "process; unset ONEDNN_MAX_CPU_ISA, or use precision=float32 (or auto, float32 under the cap)")
    if requested != "auto":
        return requested
    isa = onednn_isa(flags, environ)
    return "mixed_bfloat16" if ISA_ORDER.index(isa) >= ISA_ORDER.index(BF16_ISA) else "float32"


def tf_default_onednn_ops(flags: frozenset | None = None) -> bool:
    """Whether TensorFlow turns its oneDNN operations on by itself here (TF_ENABLE_ONEDNN_OPTS
    unset): on CPUs with AVX-512 VNNI or newer (TensorFlow 2.9's release notes), uncapped ISA."""
    return ISA_ORDER.index(onednn_isa(flags, {})) >= ISA_ORDER.index(TF_ONEDNN_DEFAULT_ISA)


def onednn_ops_setting(environ=os.environ, flags: frozenset | None = None) -> bool:
    """Whether a TensorFlow started now with `environ` runs its oneDNN operations: the value of
    TF_ENABLE_ONEDNN_OPTS ("1"/"true" on, "0"/"false" off), or TensorFlow's default for this CPU
    if it is unset. Raises ValueError for any other value."""
    value = environ.get(ONEDNN_OPTS_VARIABLE)
    if value is None or not value.strip():
        return tf_default_onednn_ops(flags)
    if value.strip().lower() in ("1", "true"):
        return True
    if value.strip().lower() in ("0", "false"):
        return False
    raise ValueError(f"{ONEDNN_OPTS_VARIABLE}={value!r} is neither 1 nor 0; set it to 1 (oneDNN operations on, "
                     "mnistlab's default) or 0 (off)")


def onednn_ops_running() -> bool:
    """Whether this process's TensorFlow runs its oneDNN operations (fixed when it started)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def check_onednn_ops(requested: bool | None) -> bool:
    """The oneDNN operations of this process's TensorFlow: `requested` if it matches them, and
    whatever they are for None. Raises ValueError, with the fix, when they differ from a request:
    TensorFlow reads the switch once, when it starts, so it cannot change within a process."""
    running = onednn_ops_running()
    if requested is None or requested == running:
        return running
    raise ValueError(
        f"onednn_ops={requested} but this process's TensorFlow started with its oneDNN operations "
        f"{'on' if running else 'off'}; TensorFlow reads {ONEDNN_OPTS_VARIABLE} once, when it starts. Run in a new "
        f"process with {ONEDNN_OPTS_VARIABLE}={int(requested)} set before Python starts (e.g. "
        f"`{ONEDNN_OPTS_VARIABLE}={int(requested)} python -m mnistlab ...`), or leave onednn_ops unset (None)")


def recorded_onednn_ops(record: dict) -> bool | None:
    """The oneDNN operations a run recorded before `onednn_ops` existed ran with: TensorFlow's
    default for its CPU, known when its environment names an uncapped oneDNN ISA; else None."""
    environment = record.get("environment") or {}
    isa = environment.get("onednn_isa")
    if isa not in ISA_ORDER or environment.get("onednn_max_cpu_isa"):
        return None
    return ISA_ORDER.index(isa) >= ISA_ORDER.index(TF_ONEDNN_DEFAULT_ISA)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve(config: TrainConfig) -> dict:
    """The machine-dependent settings of `config` as they will run here, before TensorFlow starts:
    {"precision": ..., "threads": ..., "onednn_ops": ...}. `apply_threads` reports whether the
    threads took effect, `check_onednn_ops` whether TensorFlow's oneDNN operations match."""
    return {"precision": resolve_precision(config.precision),
            "threads": config.threads or available_cores(),
            "onednn_ops": onednn_ops_setting() if config.onednn_ops is None else config.onednn_ops}


def apply_threads(threads: int) -> int:
    """Give TensorFlow `threads` intra-op and `threads` inter-op threads: a run on a share of the
    machine's cores (a Dask worker's) stays within it, and a run on all of them keeps them busy.
    (A single inter-op thread would serialise the step's small ops behind its large ones;
    `make bench-levers` measures what that costs.) Returns the intra-op
    threads in force afterwards: `threads`, or TensorFlow's earlier setting if it had already
    started (then it cannot change; 0, TensorFlow's default, is reported as every available core)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started in this process: its pools are fixed
        pass
    return tf.config.threading.get_intra_op_parallelism_threads() or available_cores()


def describe_machine() -> dict:
    """What a figure measured here must name: the CPU model, its cores, oneDNN's ISA, and whether
    TensorFlow runs its oneDNN operations (this process's if TensorFlow has started, else the
    environment's setting)."""
    name, _ = cpu_info()
    return {"cpu_model": name, "cores": available_cores(), "onednn_isa": onednn_isa(),
            "onednn_max_cpu_isa": max_isa_setting(),
            "onednn_ops": onednn_ops_running() if "tensorflow" in sys.modules else onednn_ops_setting()}
