"""What the machine resolves: precision="auto" from the CPU flags and ONEDNN_MAX_CPU_ISA, and the ISA recorded."""

from __future__ import annotations

import pytest

from mnistlab import machine

# Numerics that depend on the CPU's instruction set: CI runs these again under ONEDNN_MAX_CPU_ISA=AVX2.
pytestmark = pytest.mark.isa

AMX = frozenset("fpu sse4_1 avx avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 amx_bf16 amx_tile".split())
AVX2 = frozenset("fpu sse4_1 avx avx2 fma".split())


def test_auto_is_bfloat16_only_where_onednn_may_use_bfloat16_units():
    assert machine.resolve_precision("auto", AMX, {}) == "mixed_bfloat16"
    assert machine.resolve_precision("auto", AVX2, {}) == "float32"
    # A bfloat16-capable machine imitating a commodity CPU.
    assert machine.resolve_precision("auto", AMX, {"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "float32"
    assert machine.resolve_precision("auto", AMX, {"DNNL_MAX_CPU_ISA": "avx512_core_vnni"}) == "float32"
    assert machine.resolve_precision("auto", AMX, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}) == "mixed_bfloat16"
    assert machine.resolve_precision("auto", AMX, {"ONEDNN_MAX_CPU_ISA": "ALL"}) == "mixed_bfloat16"
    for explicit in ("float32", "mixed_bfloat16"):
        assert machine.resolve_precision(explicit, AVX2, {}) == explicit


def test_isa_is_the_cpus_best_capped_by_the_environment():
    assert machine.onednn_isa(AMX, {}) == "AVX10_1_512_AMX"
    assert machine.onednn_isa(AMX, {"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "AVX2"
    assert machine.onednn_isa(AVX2, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) == "AVX2"
    with pytest.raises(ValueError, match="ONEDNN_MAX_CPU_ISA='AVX3' is not an ISA oneDNN knows"):
        machine.onednn_isa(AVX2, {"ONEDNN_MAX_CPU_ISA": "avx3"})


def test_cpu_info_reads_proc_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu avx2 fma\n")
    assert machine.cpu_info(str(path)) == ("Some CPU @ 2GHz", frozenset({"fpu", "avx2", "fma"}))
    assert machine.cpu_info(str(tmp_path / "missing")) == ("unknown", frozenset())


@pytest.mark.slow
def test_inferred_isa_agrees_with_onednn_here():
    """oneDNN's own verbose log names the ISA it uses; the inference must agree on this machine."""
    probed = machine.probe_onednn_isa()
    assert probed is not None
    inferred = machine.onednn_isa()
    words = {"AVX2": "avx2", "AVX512_CORE": "avx-512", "AVX10_1_512_AMX": "amx", "AVX512_CORE_BF16": "bfloat16",
             "AVX512_CORE_VNNI": "vnni", "AVX2_VNNI": "vnni"}
    assert words.get(inferred, inferred.lower()) in probed.lower(), (inferred, probed)


def test_tensorflows_onednn_operations_setting():
    # Unset: TensorFlow's own default, on only from AVX-512 VNNI up (the CPU's, not a cap's).
    assert machine.onednn_ops_setting({}, AVX2) is False
    assert machine.onednn_ops_setting({}, AMX) is True
    assert machine.onednn_ops_setting({"TF_ENABLE_ONEDNN_OPTS": "1"}, AVX2) is True
    assert machine.onednn_ops_setting({"TF_ENABLE_ONEDNN_OPTS": "false"}, AMX) is False
    with pytest.raises(ValueError, match="TF_ENABLE_ONEDNN_OPTS='yes' is neither 1 nor 0"):
        machine.onednn_ops_setting({"TF_ENABLE_ONEDNN_OPTS": "yes"}, AVX2)


def test_runs_recorded_before_the_setting_ran_with_tensorflows_default():
    assert machine.recorded_onednn_ops({"environment": {"onednn_isa": "AVX2", "onednn_max_cpu_isa": None}}) is False
    assert machine.recorded_onednn_ops({"environment": {"onednn_isa": "AVX10_1_512_AMX"}}) is True
    # Capped by ONEDNN_MAX_CPU_ISA: the CPU's own features, which TensorFlow looked at, are unknown.
    assert machine.recorded_onednn_ops({"environment": {"onednn_isa": "AVX2", "onednn_max_cpu_isa": "AVX2"}}) is None
    assert machine.recorded_onednn_ops({}) is None


@pytest.mark.slow
def test_importing_mnistlab_first_turns_onednn_operations_on():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = "import mnistlab, tensorflow; from mnistlab import machine; print(machine.onednn_ops_running())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_importing_mnistlab_keeps_the_users_onednn_setting():
    import os
    import subprocess
    import sys

    code = "import os, mnistlab; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_an_avx2_cap_on_a_bfloat16_cpu_refuses_explicit_bfloat16():
    from mnistlab.machine import bfloat16_hidden_by_cap, resolve_precision

    zen4 = frozenset({"avx512_bf16", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx2", "fma"})
    capped = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert bfloat16_hidden_by_cap(zen4, capped) and not bfloat16_hidden_by_cap(zen4, {})
    assert not bfloat16_hidden_by_cap(frozenset({"avx2", "fma"}), capped)  # an AVX2 CPU: nothing hidden
    assert resolve_precision("auto", zen4, capped) == "float32"
    with pytest.raises(ValueError, match="ONEDNN_MAX_CPU_ISA=AVX2 hides this CPU's bfloat16 units"):
        resolve_precision("mixed_bfloat16", zen4, capped)
    assert resolve_precision("mixed_bfloat16", zen4, {}) == "mixed_bfloat16"
