"""The gemm kernel against numpy, for every epilogue, odd shapes and both A layouts, on both kernel
sets (the fast one this CPU runs and the reference loops)."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from segfast import _core

SHAPES = [(1, 1, 1), (7, 10, 13), (32, 128, 784), (784, 128, 32), (9, 48, 5), (17, 49, 3), (8, 33, 64), (3, 300, 11)]
# one output column (a regression head and its update) takes a kernel of its own on AVX-512
SHAPES += [(64, 1, 32), (33, 1, 70), (5, 1, 17), (17, 1, 1)]


def operands(rng, m, n, k, trans_a):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return a, b, (a.T if trans_a else a).astype(np.float64) @ b


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_store_matches_numpy(rng, m, n, k, trans_a, reference):
    a, b, want = operands(rng, m, n, k, trans_a)
    c = np.full((m, n), np.nan, dtype=np.float32)
    _core._testing.gemm(a, b, c, trans_a=trans_a, reference=reference)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_add_accumulates_into_c(rng, m, n, k, trans_a, reference):
    a, b, want = operands(rng, m, n, k, trans_a)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = c0.copy()
    _core._testing.gemm(a, b, c, trans_a=trans_a, epilogue="add", reference=reference)
    np.testing.assert_allclose(c, c0 + want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (17, 33), (784, 512), (5, 70), (64, 10), (31, 16)])
def test_transpose_matches_numpy(rng, shape, reference):
    a = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_core._testing.transpose(a, reference=reference), a.T)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_bias_and_relu(rng, m, n, k, reference):
    a, b, want = operands(rng, m, n, k, False)
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.full((m, n), np.nan, dtype=np.float32)
    _core._testing.gemm(a, b, c, epilogue="bias", bias=bias, reference=reference)
    np.testing.assert_allclose(c, want + bias, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    c[:] = np.nan
    _core._testing.gemm(a, b, c, epilogue="bias_relu", bias=bias, reference=reference)
    np.testing.assert_allclose(c, np.maximum(want + bias, 0), rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_fused_sgd_update(rng, m, n, k, momentum, reference):
    a, b, grad = operands(rng, m, n, k, True)
    w = rng.standard_normal((m, n)).astype(np.float32)
    v = rng.standard_normal((m, n)).astype(np.float32)
    lr, wd = 0.05, 0.01
    step = grad + wd * w
    want_v = momentum * v + step if momentum else None
    want_w = w - lr * (want_v if momentum else step)
    c = w.copy()
    vel = v.copy() if momentum else None
    _core._testing.gemm(
        a,
        b,
        c,
        trans_a=True,
        epilogue="sgd",
        velocity=vel,
        lr=lr,
        momentum=momentum,
        weight_decay=wd,
        reference=reference,
    )
    np.testing.assert_allclose(c, want_w, rtol=1e-4, atol=1e-5 * np.sqrt(k))
    if momentum:
        np.testing.assert_allclose(vel, want_v, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("reference", [False, True])
def test_fused_update_with_proximal_term(rng, reference):
    a, b, grad = operands(rng, 37, 50, 9, True)
    w = rng.standard_normal((37, 50)).astype(np.float32)
    anchor = rng.standard_normal((37, 50)).astype(np.float32)
    c = w.copy()
    _core._testing.gemm(
        a, b, c, trans_a=True, epilogue="sgd", lr=0.1, weight_decay=0.01, anchor=anchor, prox=0.3, reference=reference
    )
    np.testing.assert_allclose(c, w - 0.1 * (grad + 0.01 * w + 0.3 * (w - anchor)), rtol=1e-4, atol=1e-5)


def test_fast_kernel_agrees_with_reference(rng):
    a, b, _ = operands(rng, 40, 70, 50, False)
    fast, ref = np.empty((40, 70), np.float32), np.empty((40, 70), np.float32)
    _core._testing.gemm(a, b, fast)
    _core._testing.gemm(a, b, ref, reference=True)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("epilogue", ["store", "add", "bias", "bias_relu", "sgd"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,k", [(64, 32), (33, 70), (5, 17), (40, 1)])
def test_one_column_gives_the_bits_of_the_tiles(rng, m, k, trans_a, epilogue):
    """A product with one output column runs its own kernel, which must add each output's
    products in the same order as the register tiles do: column 0 of a two-column product."""
    a, b2, _ = operands(rng, m, 2, k, trans_a)
    c2 = rng.standard_normal((m, 2)).astype(np.float32)
    v2 = rng.standard_normal((m, 2)).astype(np.float32)
    anchor2 = rng.standard_normal((m, 2)).astype(np.float32)
    bias2 = rng.standard_normal(2).astype(np.float32)
    c1, v1 = np.ascontiguousarray(c2[:, :1]), np.ascontiguousarray(v2[:, :1])
    sgd = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "prox": 0.3} if epilogue == "sgd" else {}
    extra2 = {"velocity": v2, "anchor": anchor2} if sgd else {}
    extra1 = {"velocity": v1, "anchor": np.ascontiguousarray(anchor2[:, :1])} if sgd else {}
    bias = epilogue.startswith("bias")
    _core._testing.gemm(a, b2, c2, trans_a=trans_a, epilogue=epilogue, bias=bias2 if bias else None, **extra2, **sgd)
    _core._testing.gemm(
        a,
        np.ascontiguousarray(b2[:, :1]),
        c1,
        trans_a=trans_a,
        epilogue=epilogue,
        bias=bias2[:1] if bias else None,
        **extra1,
        **sgd,
    )
    np.testing.assert_array_equal(c1[:, 0], c2[:, 0])
    np.testing.assert_array_equal(v1[:, 0], v2[:, 0])


def cpu_runs_avx512():
    """Whether this CPU has every instruction set the AVX-512 kernels are compiled with (as
    cpp/dispatch.cpp checks it), from the kernel's own list of the CPU's flags."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("reads the CPU's flags from /proc/cpuinfo (x86-64 Linux)")
    with open("/proc/cpuinfo") as f:
        flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    # pni is how Linux names SSE3
    return {"avx512f", "avx512vl", "fma", "avx2", "avx", "sse4_2", "sse4_1", "ssse3", "pni", "popcnt"} <= flags


@pytest.mark.parametrize("setting", [None, "reference", "auto"])
def test_kernel_set_follows_the_cpu_and_the_override(setting):
    env = {k: v for k, v in os.environ.items() if k != "SEGFAST_GEMM"}
    if setting is not None:
        env["SEGFAST_GEMM"] = setting
    got = subprocess.run(
        [sys.executable, "-c", "from segfast import _core; print(_core.gemm_kernel())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    want = "avx512" if setting != "reference" and cpu_runs_avx512() else "reference"
    assert got == want


def test_gemm_refuses_bad_arrays(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"c must have shape \(4, 6\)"):
        _core._testing.gemm(a, b, np.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="dtype float32"):
        _core._testing.gemm(a.astype(np.float64), b, np.empty((4, 6), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core._testing.gemm(np.asfortranarray(a), b, np.empty((4, 6), np.float32))
    with pytest.raises(ValueError, match="epilogue"):
        _core._testing.gemm(a, b, np.empty((4, 6), np.float32), epilogue="nope")
