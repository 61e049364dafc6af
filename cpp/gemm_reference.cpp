// Plain-loop version of gemm(): the oracle the fast kernel is tested against, and the
// kernel on CPUs without AVX-512. Accumulates in float, in the same k order as the fast one.
#include <vector>

#include "kernel_sets.h"

namespace segfast {

void gemm_reference(Epilogue epilogue, const GemmArgs& g) {
    std::vector<float> acc(static_cast<std::size_t>(g.n));
    for (int r = 0; r < g.m; ++r) {
        for (int j = 0; j < g.n; ++j) acc[j] = 0.f;
        for (int p = 0; p < g.k; ++p) {
            const float a = g.a[r * g.a_rs + p * g.a_ks];
            const float* b = g.b + p * g.ldb;
            for (int j = 0; j < g.n; ++j) acc[j] += a * b[j];
        }
        float* c = g.c + r * g.ldc;
        switch (epilogue) {
            case Epilogue::Store:
                for (int j = 0; j < g.n; ++j) c[j] = acc[j];
                break;
            case Epilogue::Add:
                for (int j = 0; j < g.n; ++j) c[j] += acc[j];
                break;
            case Epilogue::Bias:
                for (int j = 0; j < g.n; ++j) c[j] = acc[j] + g.bias[j];
                break;
            case Epilogue::BiasRelu:
                for (int j = 0; j < g.n; ++j) {
                    float z = acc[j] + g.bias[j];
                    c[j] = z > 0.f ? z : 0.f;
                }
                break;
            case Epilogue::Sgd: {
                float* v = g.velocity ? g.velocity + r * g.ldc : nullptr;
                const float* anchor = g.anchor ? g.anchor + r * g.ldc : nullptr;
                for (int j = 0; j < g.n; ++j) {
                    float step = acc[j] + g.sgd.weight_decay * c[j];
                    if (anchor) step += g.sgd.prox * (c[j] - anchor[j]);
                    if (v) {
                        v[j] = g.sgd.momentum * v[j] + step;
                        step = v[j];
                    }
                    c[j] -= g.sgd.lr * step;
                }
                break;
            }
        }
    }
}

void transpose_reference(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out) {
    constexpr int kTile = 16;  // both sides stay within a few cache lines
    for (int p0 = 0; p0 < rows; p0 += kTile)
        for (int i0 = 0; i0 < cols; i0 += kTile)
            for (int i = i0; i < i0 + kTile && i < cols; ++i)
                for (int p = p0; p < p0 + kTile && p < rows; ++p) out[i * ld_out + p] = in[p * ld_in + i];
}

}  // namespace segfast
