// One matrix product per model, all models in one launch: C_m = A_m @ B_m, m = blockIdx.z.
// Operands are addressed by strides, so the same kernel multiplies by a matrix or by its
// transpose without copies, and a model stride of 0 lets every model read one shared matrix
// (the rows of X at prediction, the broadcast parameters of a round). A layer's bias is the
// last row of its weight block (W then b in a parameter row), so "x @ W + b" is one product
// with a column of ones appended to x, and the bias gradient is one more row of the weight
// gradient: `ones_row` / `ones_col` make the operand read 1 there.
// What becomes of each result is the epilogue's business (a functor called per element).
#pragma once
#include <algorithm>

#include "cuda_check.h"

namespace segfast::cuda {

struct Operand {
    const float* p = nullptr;
    long long model_stride = 0, row_stride = 0, col_stride = 0;
    int ones_row = -1, ones_col = -1;
};

__device__ __forceinline__ float element(const Operand& o, int m, int r, int c, int n_rows, int n_cols) {
    if (r >= n_rows || c >= n_cols) return 0.f;
    if (r == o.ones_row || c == o.ones_col) return 1.f;
    return o.p[m * o.model_stride + r * o.row_stride + c * o.col_stride];
}

// Tiles of BM x BN results per block, TM x TN per thread, strided across the tile so that
// neighbouring threads touch neighbouring shared-memory words. rows[m] == 0 skips model m
// (it has no minibatch this step, or it diverged).
template <int BM, int BN, int TM, int TN, class Epilogue>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    batched_gemm_kernel(int n_models, int M, int N, int K, Operand A, Operand B, const int* rows, Epilogue epi) {
    constexpr int BK = 32, TX = BN / TN, TY = BM / TM, T = TX * TY;
    __shared__ float As[BK][BM + 1];
    __shared__ float Bs[BK][BN + 1];
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    // Global loads run along whichever dimension is contiguous, so a warp reads whole lines.
    const bool a_k_fast = A.col_stride == 1, b_j_fast = B.col_stride == 1;
    for (int m = blockIdx.z; m < n_models; m += gridDim.z) {
        if (rows && rows[m] == 0) continue;
        float acc[TM][TN];
#pragma unroll
        for (int u = 0; u < TM; ++u)
#pragma unroll
            for (int v = 0; v < TN; ++v) acc[u][v] = 0.f;
        for (int k0 = 0; k0 < K; k0 += BK) {
            for (int e = tid; e < BM * BK; e += T) {
                const int ii = a_k_fast ? e / BK : e % BM, kk = a_k_fast ? e % BK : e / BM;
                As[kk][ii] = element(A, m, i0 + ii, k0 + kk, M, K);
            }
            for (int e = tid; e < BK * BN; e += T) {
                const int jj = b_j_fast ? e % BN : e / BK, kk = b_j_fast ? e / BN : e % BK;
                Bs[kk][jj] = element(B, m, k0 + kk, j0 + jj, K, N);
            }
            __syncthreads();
#pragma unroll 8
            for (int k = 0; k < BK; ++k) {
                float a[TM], b[TN];
#pragma unroll
                for (int u = 0; u < TM; ++u) a[u] = As[k][ty + u * TY];
#pragma unroll
                for (int v = 0; v < TN; ++v) b[v] = Bs[k][tx + v * TX];
#pragma unroll
                for (int u = 0; u < TM; ++u)
#pragma unroll
                    for (int v = 0; v < TN; ++v) acc[u][v] = fmaf(a[u], b[v], acc[u][v]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int u = 0; u < TM; ++u)
#pragma unroll
            for (int v = 0; v < TN; ++v) {
                const int i = i0 + ty + u * TY, j = j0 + tx + v * TX;
                if (i < M && j < N) epi(m, i, j, acc[u][v]);
            }
    }
}

// True when SEGFAST_CUDA_KERNELS=tiled asks for this kernel everywhere, instead of the few-rows
// forward (small_rows.cuh) and the weight update (sgd_update.cuh): the tests compare them, the
// benchmarks measure what they bring.
bool tiled_only();

template <int BM, int BN, int TM, int TN, class Epilogue>
void launch_batched_gemm(int n_models, int M, int N, int K, const Operand& A, const Operand& B, const int* rows,
                         const Epilogue& epi) {
    const dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM, std::min(n_models, 65535));
    batched_gemm_kernel<BM, BN, TM, TN><<<grid, (BM / TM) * (BN / TN)>>>(n_models, M, N, K, A, B, rows, epi);
    SEGFAST_CUDA_LAUNCHED("batched_gemm_kernel");
}

// C_m (M, N) = A_m (M, K) @ B_m (K, N) for every model, the tile shape picked by M: training
// products have M = the minibatch (often under 32 rows), weight updates M = a layer's width.
template <class Epilogue>
void batched_gemm(int n_models, int M, int N, int K, const Operand& A, const Operand& B, const int* rows,
                  const Epilogue& epi) {
    if (n_models <= 0 || M <= 0 || N <= 0) return;
    if (M <= 16) launch_batched_gemm<16, 64, 1, 4>(n_models, M, N, K, A, B, rows, epi);
    else if (M <= 32) launch_batched_gemm<32, 64, 2, 4>(n_models, M, N, K, A, B, rows, epi);
    else launch_batched_gemm<64, 64, 4, 4>(n_models, M, N, K, A, B, rows, epi);
}

// Epilogues.

// c = acc, or max(acc, 0) for a hidden layer.
struct StoreActivation {
    float* c;
    long long model_stride, ld;
    bool relu;
    __device__ void operator()(int m, int i, int j, float acc) const {
        c[m * model_stride + static_cast<long long>(i) * ld + j] = relu ? (acc > 0.f ? acc : 0.f) : acc;
    }
};

// Backward through a ReLU: c = acc where the layer's input was positive, else 0.
struct ReluGradient {
    float* c;
    long long model_stride, ld;
    const float* act;  // the ReLU's output, (rows, ld) per model
    long long act_model_stride;
    __device__ void operator()(int m, int i, int j, float acc) const {
        const long long at = static_cast<long long>(i) * ld + j;
        c[m * model_stride + at] = act[m * act_model_stride + at] > 0.f ? acc : 0.f;
    }
};

// acc is the gradient of the weight block of one layer (bias as its last row): one SGD step,
// PyTorch's rule as on the CPU: g += wd * w [+ prox * (w - anchor)]; v = momentum * v + g; w -= lr * v.
struct SgdUpdate {
    const float* w_in;  // parameters before the step; model stride w_in_stride (0: a broadcast row)
    long long w_in_stride;
    const float* v_in;    // velocity before the step, or null for zero (after a broadcast)
    float* w;             // parameters after the step, (n_models, P): w_in itself, or on an
    float* v;             // epoch's first step another buffer; velocity likewise (or null)
    const float* anchor;  // the proximal term's anchor, or null
    long long anchor_stride;
    int* non_finite;      // (n_models,) set to 1 when a new weight is NaN or inf
    long long P, offset;  // row length; where this layer's block starts in a row
    int ld;               // the layer's output width
    float lr, momentum, weight_decay, prox;
    // load() reads what a step needs, store() writes the result: a kernel can issue the loads
    // of several weights before the first store (which, as far as the compiler knows, may alias
    // a later load and would otherwise serialise them).
    struct State {
        float w, v, anchor;
    };
    __device__ State load(int m, int i, int j) const {
        const long long at = offset + static_cast<long long>(i) * ld + j;
        return {w_in[m * w_in_stride + at], v && v_in ? v_in[m * P + at] : 0.f,
                anchor ? anchor[m * anchor_stride + at] : 0.f};
    }
    __device__ void store(int m, int i, int j, float grad, const State& s) const {
        const long long row = m * P + offset + static_cast<long long>(i) * ld + j;
        float step = grad + weight_decay * s.w;
        if (anchor) step += prox * (s.w - s.anchor);
        if (v) {
            step = momentum * s.v + step;
            v[row] = step;
        }
        const float w1 = s.w - lr * step;
        w[row] = w1;
        if (!isfinite(w1)) non_finite[m] = 1;
    }
    __device__ void operator()(int m, int i, int j, float grad) const { store(m, i, j, grad, load(m, i, j)); }
};

}  // namespace segfast::cuda
