// The forward pass of many models on many rows (prediction, evaluation): the products are
// large (rows in the thousands), so the hidden layers get a register-blocked product of
// 128 x 128 tiles (each thread 8 x 8 results, operands read from shared memory four at a
// time, the next k slice loaded into registers while the current one is multiplied), and the
// output layer, narrow (a few classes), gets one thread per row with the layer's weights in
// shared memory and the softmax fused, so logits never go back to device memory.
// Not for training's minibatches of a few rows: small_rows.cuh and resident_epoch.h serve those.
#pragma once
#include <algorithm>

#include "cuda_check.h"

namespace segfast::cuda {

constexpr int kDenseTile = 128, kDenseK = 8, kDensePad = 4;

// out_m (rows, N) = relu(a_m (rows, K) @ W_m (K, N) + b_m) for every model m, W_m then b_m
// at params + m * P + w_off. a_m = a + m * a_stride (a_stride 0: every model reads the same
// rows). out_m = out + m * out_stride.
__global__ void __launch_bounds__(256)  // (256, 2) caps it at 128 registers: it spills then
    dense_relu_kernel(int n_models, int rows, int N, int K, const float* a, long long a_stride, const float* params,
                      long long P, long long w_off, float* out, long long out_stride) {
    __shared__ float As[2][kDenseK][kDenseTile + kDensePad];  // [k][row], padded: conflict-free stores
    __shared__ float Bs[2][kDenseK][kDenseTile];              // [k][column]
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * kDenseTile, col0 = blockIdx.x * kDenseTile;
    for (int m = blockIdx.z; m < n_models; m += gridDim.z) {
        const float* am = a + m * a_stride;
        const float* w = params + m * P + w_off;
        // Each thread loads 4 elements of each tile: A as 4 rows x 8 k per warp (32-byte runs
        // along k), B as whole 128-column runs.
        float a_next[4], b_next[4];
        auto load = [&](int k0) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int e = t + 256 * i, r = row0 + e / kDenseK, k = k0 + e % kDenseK;
                a_next[i] = r < rows && k < K ? am[static_cast<long long>(r) * K + k] : 0.f;
                const int kb = k0 + e / kDenseTile, c = col0 + e % kDenseTile;
                b_next[i] = kb < K && c < N ? w[static_cast<long long>(kb) * N + c] : 0.f;
            }
        };
        auto store = [&](int buffer) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int e = t + 256 * i;
                As[buffer][e % kDenseK][e / kDenseK] = a_next[i];
                Bs[buffer][e / kDenseTile][e % kDenseTile] = b_next[i];
            }
        };
        float acc[8][8];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
        __syncthreads();  // the previous model's last tiles are no longer read
        load(0);
        store(0);
        __syncthreads();
        int buffer = 0;
        for (int k0 = 0; k0 < K; k0 += kDenseK) {
            const bool more = k0 + kDenseK < K;
            if (more) load(k0 + kDenseK);
#pragma unroll
            for (int k = 0; k < kDenseK; ++k) {
                const float4 a0 = *reinterpret_cast<const float4*>(&As[buffer][k][ty * 4]);
                const float4 a1 = *reinterpret_cast<const float4*>(&As[buffer][k][64 + ty * 4]);
                const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buffer][k][tx * 4]);
                const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buffer][k][64 + tx * 4]);
                const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
            }
            if (more) {
                store(buffer ^ 1);
                __syncthreads();
                buffer ^= 1;
            }
        }
        const float* bias = w + static_cast<long long>(K) * N;
        float* om = out + m * out_stride;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int r = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
            if (r >= rows) continue;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const int c = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
                if (c < N) {
                    const float v = acc[i][j] + bias[c];
                    om[static_cast<long long>(r) * N + c] = v > 0.f ? v : 0.f;
                }
            }
        }
    }
}

enum class OutputMode { logits, proba, log_proba };
constexpr int kOutputMaxClasses = 32, kOutputThreads = 256;

// out_m (rows, C) = the output layer of h_m (rows, K), as logits, probabilities or
// log-probabilities (from the logits, so that tiny probabilities do not underflow to log 0).
// One thread per row; the layer's (K + 1, C) block in shared memory (dynamic, K*C + C floats).
__global__ void __launch_bounds__(kOutputThreads)
    output_kernel(int n_models, int rows, int C, int K, const float* h, long long h_stride, const float* params,
                  long long P, long long w_off, float* out, long long out_stride, OutputMode mode) {
    extern __shared__ float w_s[];  // (K + 1, C): W then b
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    for (int m = blockIdx.y; m < n_models; m += gridDim.y) {
        __syncthreads();  // the previous model's weights are no longer read
        const float* w = params + m * P + w_off;
        for (int i = threadIdx.x; i < (K + 1) * C; i += blockDim.x) w_s[i] = w[i];
        __syncthreads();
        if (r >= rows) continue;
        float z[kOutputMaxClasses];
#pragma unroll
        for (int c = 0; c < kOutputMaxClasses; ++c) z[c] = c < C ? w_s[K * C + c] : 0.f;
        const float* hr = h + m * h_stride + static_cast<long long>(r) * K;
        for (int k = 0; k < K; ++k) {
            const float hk = hr[k];
#pragma unroll
            for (int c = 0; c < kOutputMaxClasses; ++c)
                if (c < C) z[c] = fmaf(hk, w_s[k * C + c], z[c]);
        }
        float* o = out + m * out_stride + static_cast<long long>(r) * C;
        if (mode == OutputMode::logits) {
#pragma unroll
            for (int c = 0; c < kOutputMaxClasses; ++c)
                if (c < C) o[c] = z[c];
            continue;
        }
        float top = z[0];
#pragma unroll
        for (int c = 1; c < kOutputMaxClasses; ++c)
            if (c < C) top = z[c] > top ? z[c] : top;
        float total = 0.f;
#pragma unroll
        for (int c = 0; c < kOutputMaxClasses; ++c)
            if (c < C) total += expf(z[c] - top);
        if (mode == OutputMode::log_proba) {
            const float shift = top + logf(total);
#pragma unroll
            for (int c = 0; c < kOutputMaxClasses; ++c)
                if (c < C) o[c] = z[c] - shift;
        } else {
            const float inv = 1.f / total;
#pragma unroll
            for (int c = 0; c < kOutputMaxClasses; ++c)
                if (c < C) o[c] = expf(z[c] - top) * inv;
        }
    }
}

inline void dense_relu(int n_models, int rows, int N, int K, const float* a, long long a_stride, const float* params,
                       long long P, long long w_off, float* out, long long out_stride) {
    if (n_models <= 0 || rows <= 0 || N <= 0) return;
    const dim3 grid((N + kDenseTile - 1) / kDenseTile, (rows + kDenseTile - 1) / kDenseTile,
                    static_cast<unsigned>(std::min(n_models, 65535)));
    dense_relu_kernel<<<grid, 256>>>(n_models, rows, N, K, a, a_stride, params, P, w_off, out, out_stride);
    SEGFAST_CUDA_LAUNCHED("dense_relu_kernel");
}

// Whether output_kernel can take a layer of K inputs and C classes.
inline bool output_fits(int K, int C) {
    return C <= kOutputMaxClasses && sizeof(float) * static_cast<std::size_t>(K + 1) * C <= 48 * 1024;
}

inline void output_layer(int n_models, int rows, int C, int K, const float* h, long long h_stride, const float* params,
                         long long P, long long w_off, float* out, long long out_stride, OutputMode mode) {
    if (n_models <= 0 || rows <= 0) return;
    const dim3 grid((rows + kOutputThreads - 1) / kOutputThreads, static_cast<unsigned>(std::min(n_models, 65535)));
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(K + 1) * C;
    output_kernel<<<grid, kOutputThreads, shared>>>(n_models, rows, C, K, h, h_stride, params, P, w_off, out,
                                                    out_stride, mode);
    SEGFAST_CUDA_LAUNCHED("output_kernel");
}

}  // namespace segfast::cuda
