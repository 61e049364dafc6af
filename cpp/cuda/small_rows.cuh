// The forward product of a layer on a minibatch of a few rows (M <= 8: say 10,000 segments of
// 6 rows), which the tiled kernel (batched_gemm.cuh) serves poorly: its row tiles are mostly
// padding and it re-reads each weight tile through shared memory. Here each thread owns one
// output column, the model's rows sit in shared memory, and every weight is read once, a warp
// reading a whole contiguous run of a weight row at a time; faster than the tiled kernel on W5
// of bench_gpu.py. The same idea for the weight update (a thread per column, a sum over <= 32
// rows) was measured too and dropped: slower than the tiled kernel (sgd_update.cuh is what
// replaced both there). The timings are in bench/README.md, "Measured choices".
#pragma once
#include "batched_gemm.cuh"

namespace segfast::cuda {

constexpr int kSmallRows = 8, kColumnThreads = 256;

template <class Epilogue>
__global__ void __launch_bounds__(kColumnThreads)
    small_rows_kernel(int n_models, int M, int N, int K, Operand A, Operand B, const int* rows, Epilogue epi) {
    extern __shared__ float a_rows[];  // (M, K)
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    for (int m = blockIdx.z; m < n_models; m += gridDim.z) {
        if (rows && rows[m] == 0) continue;
        __syncthreads();  // the previous model's rows are no longer read
        for (int e = threadIdx.x; e < M * K; e += blockDim.x) a_rows[e] = element(A, m, e / K, e % K, M, K);
        __syncthreads();
        if (j < N) {
            float acc[kSmallRows];
#pragma unroll
            for (int r = 0; r < kSmallRows; ++r) acc[r] = 0.f;
            const float* b = B.p + m * B.model_stride + static_cast<long long>(j) * B.col_stride;
#pragma unroll 4  // several weight loads in flight per thread: this loop streams the weights
            for (int k = 0; k < K; ++k) {
                const float bk = b[static_cast<long long>(k) * B.row_stride];
#pragma unroll
                for (int r = 0; r < kSmallRows; ++r)
                    if (r < M) acc[r] = fmaf(a_rows[r * K + k], bk, acc[r]);
            }
#pragma unroll
            for (int r = 0; r < kSmallRows; ++r)
                if (r < M) epi(m, r, j, acc[r]);
        }
    }
}

// C_m (M, N) = A_m (M, K) @ B_m (K, N) for every model: the kernel above where the rows are few
// and B's rows contiguous, the tiled kernel otherwise.
template <class Epilogue>
void product(int n_models, int M, int N, int K, const Operand& A, const Operand& B, const int* rows,
             const Epilogue& epi) {
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(M) * K;
    if (n_models > 0 && M > 0 && N > 0 && M <= kSmallRows && shared <= 48 * 1024 && B.col_stride == 1 &&
        !tiled_only()) {
        const int threads = N >= kColumnThreads ? kColumnThreads : (N + 31) / 32 * 32;
        const dim3 grid((N + threads - 1) / threads, 1, static_cast<unsigned>(std::min(n_models, 65535)));
        small_rows_kernel<<<grid, threads, shared>>>(n_models, M, N, K, A, B, rows, epi);
        SEGFAST_CUDA_LAUNCHED("small_rows_kernel");
        return;
    }
    batched_gemm(n_models, M, N, K, A, B, rows, epi);
}

}  // namespace segfast::cuda
