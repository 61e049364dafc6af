// The weight update of a layer on a minibatch of at most 32 rows, the SGD step fused in:
// W_aug (d_in + 1, d_out) -= lr * ([in, 1]^T @ grad + ...), per model. Its cost is streaming
// the weights (and velocity) in and out; the product itself is a short sum. So: a block takes
// 64 rows x 32 columns of W_aug, stages the minibatch's inputs for its rows and gradients for
// its columns in shared memory once, and each thread loads its 8 weights together before
// updating and storing them (8 loads in flight per thread, where the tiled kernel's epilogue
// waits on one at a time, and no 32-deep tile padding for a 6-row minibatch).
#pragma once
#include "batched_gemm.cuh"

namespace segfast::cuda {

constexpr int kUpdateMaxRows = 32;

template <int ROWS>
__global__ void __launch_bounds__(256)
    sgd_update_kernel(int n_models, int d_in, int d_out, int K, const float* in, long long in_stride, const float* grad,
                      long long grad_stride, const int* rows, SgdUpdate epi) {
    constexpr int TX = 32, TY = 8, BM = TY * ROWS;
    __shared__ float in_s[BM][kUpdateMaxRows + 1];  // [row of W_aug][minibatch row]
    __shared__ float grad_s[kUpdateMaxRows][TX];    // [minibatch row][column]
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
    const int j = blockIdx.x * TX + tx, i0 = blockIdx.y * BM, M = d_in + 1;
    for (int m = blockIdx.z; m < n_models; m += gridDim.z) {
        if (rows[m] == 0) continue;
        __syncthreads();                               // the previous model's tiles are no longer read
        for (int e = tid; e < BM * K; e += TX * TY) {  // consecutive threads, consecutive inputs
            const int r = e % BM, k = e / BM, i = i0 + r;
            in_s[r][k] = i < d_in ? in[m * in_stride + static_cast<long long>(k) * d_in + i] : i == d_in ? 1.f : 0.f;
        }
        for (int e = tid; e < K * TX; e += TX * TY) {
            const int c = e % TX, k = e / TX, jj = blockIdx.x * TX + c;
            grad_s[k][c] = jj < d_out ? grad[m * grad_stride + static_cast<long long>(k) * d_out + jj] : 0.f;
        }
        __syncthreads();
        if (j < d_out) {
            float acc[ROWS];
#pragma unroll
            for (int r = 0; r < ROWS; ++r) acc[r] = 0.f;
            for (int k = 0; k < K; ++k) {
                const float g = grad_s[k][tx];
#pragma unroll
                for (int r = 0; r < ROWS; ++r)
                    acc[r] = fmaf(in_s[ty * ROWS + r][k], g, acc[r]);  // the same word across the warp
            }
            SgdUpdate::State state[ROWS];
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
                if (i0 + ty * ROWS + r < M) state[r] = epi.load(m, i0 + ty * ROWS + r, j);
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
                if (i0 + ty * ROWS + r < M) epi.store(m, i0 + ty * ROWS + r, j, acc[r], state[r]);
        }
    }
}

// in: (K, d_in) rows per model at model stride in_stride; grad: (K, d_out) likewise. The kernel
// above for minibatches of at most 32 rows, the tiled product with the same epilogue otherwise.
inline void sgd_update(int n_models, int d_in, int d_out, int K, const float* in, long long in_stride,
                       const float* grad, long long grad_stride, const int* rows, const SgdUpdate& epi) {
    if (K > kUpdateMaxRows || tiled_only()) {
        const Operand in_t{in, in_stride, 1, d_in, d_in, -1};  // [in, 1]^T: the bias row reads ones
        const Operand g{grad, grad_stride, d_out, 1};
        batched_gemm(n_models, d_in + 1, d_out, K, in_t, g, rows, epi);
        return;
    }
    constexpr int ROWS = 8;
    const dim3 block(32, 8), grid((d_out + 31) / 32, (d_in + 1 + 8 * ROWS - 1) / (8 * ROWS),
                                  static_cast<unsigned>(std::min(n_models, 65535)));
    sgd_update_kernel<ROWS><<<grid, block>>>(n_models, d_in, d_out, K, in, in_stride, grad, grad_stride, rows, epi);
    SEGFAST_CUDA_LAUNCHED("sgd_update_kernel");
}

}  // namespace segfast::cuda
