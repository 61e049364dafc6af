// The one matrix product every layer uses, with what happens to its result fused in:
//   acc (m, n) = A (m, k) @ B (k, n)
// A is addressed by strides, element (r, p) at a[r * a_rs + p * a_ks], so the same kernel
// serves A (a_rs = lda, a_ks = 1) and A transposed (a_rs = 1, a_ks = lda) without copies.
// B is row-major with leading dimension ldb. The epilogue decides what acc becomes:
//   Store    c = acc
//   Add      c = c + acc (a low-rank correction of a product already stored)
//   Bias     c = acc + bias
//   BiasRelu c = max(acc + bias, 0)
//   Sgd      c is a weight matrix W and acc its gradient; one SGD step in place:
//            g = acc + wd * W [+ prox * (W - anchor)];  v = momentum * v + g (if velocity);
//            W -= lr * (v or g). The proximal term (FedProx) pulls W toward anchor.
// Two implementations (kernel_sets.h): gemm_reference (plain loops: the test oracle and the
// fallback) and an AVX-512 register-blocked kernel, picked once at run time (dispatch.h).
#pragma once
#include <cstddef>

namespace segfast {

enum class Epilogue { Store, Add, Bias, BiasRelu, Sgd };

struct SgdStep {
    float lr = 0.f;
    float momentum = 0.f;
    float weight_decay = 0.f;
    float prox = 0.f;  // proximal coefficient mu; used only with an anchor
};

struct GemmArgs {
    int m = 0, n = 0, k = 0;
    const float* a = nullptr;  // (m, k) through strides a_rs, a_ks
    std::ptrdiff_t a_rs = 0, a_ks = 0;
    const float* b = nullptr;  // (k, n), row stride ldb
    std::ptrdiff_t ldb = 0;
    float* c = nullptr;  // (m, n), row stride ldc
    std::ptrdiff_t ldc = 0;
    const float* bias = nullptr;    // (n,) for Bias and BiasRelu
    float* velocity = nullptr;      // (m, n) with row stride ldc, for Sgd with momentum
    const float* anchor = nullptr;  // (m, n) with row stride ldc, for Sgd with a proximal term
    SgdStep sgd;
};

// A as it lies in memory: its rows (A (m, k) row-major, row stride ld) or its columns (A stored
// transposed, A^T (k, m) row-major with row stride ld, read without a copy).
struct OperandA {
    const float* data;
    std::ptrdiff_t a_rs, a_ks;
};
inline OperandA rows_of(const float* a, std::ptrdiff_t ld) { return {a, ld, 1}; }
inline OperandA columns_of(const float* a_t, std::ptrdiff_t ld) { return {a_t, 1, ld}; }

// The operands of c (m, n) = A (m, k) @ B (k, n), B and C row-major with row strides ldb, ldc;
// the epilogue's operands (bias, velocity, anchor, sgd) are set on the result where needed.
inline GemmArgs gemm_args(int m, int n, int k, OperandA a, const float* b, std::ptrdiff_t ldb, float* c,
                          std::ptrdiff_t ldc) {
    GemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a.data;
    g.a_rs = a.a_rs;
    g.a_ks = a.a_ks;
    g.b = b;
    g.ldb = ldb;
    g.c = c;
    g.ldc = ldc;
    return g;
}

// Columns in the AVX-512 kernel's panel (4 registers of 16 floats): B packed in (k, 64) strips,
// each contiguous, streams one run per tile (the kNN's references, the ensemble's weights).
constexpr int kGemmStrip = 64;

void gemm(Epilogue epilogue, const GemmArgs& args);

// Packs an operand the other way round: out[i * ld_out + p] = in[p * ld_in + i] for p < rows,
// i < cols (the products read A a row at a time; weights store a unit as a column).
void transpose(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out);

}  // namespace segfast
