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
