// The resident epoch kernel (resident_epoch.h says what and why). One thread-block cluster
// per model; in each CTA, per step: gather the minibatch into shared memory, the first layer's
// product for the CTA's units (the k range split over the 8 warps, then summed), the partial
// logits, one cluster barrier, the full logits summed in rank order, softmax cross-entropy,
// the hidden gradient, and the SGD update of the CTA's weights in place.
#include <cooperative_groups.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "../softmax.h"
#include "cuda_check.h"
#include "resident_epoch.h"

namespace segfast::cuda {

namespace cg = cooperative_groups;

namespace {

constexpr int kWarps = kResidentThreads / 32, kMaxCluster = 16;

// Where each array sits in a CTA's shared memory (offsets in floats, all multiples of 4 so
// that every array is 16-byte aligned). The same function sizes the launch on the host.
struct Layout {
    int k4 = 0;  // d0 + 1 (the bias input) rounded up to 4: the first layer's k range
    int xs = 0;  // row stride of the minibatch: >= k4 and 4 mod 32, so that 8 rows read at
                 // one k fall in 8 different groups of 4 banks
    int up = 0, c4 = 0;
    int w1 = 0, v1 = 0, x = 0, red = 0, h = 0, dh = 0, w2 = 0, v2 = 0, b2 = 0, vb2 = 0, part = 0, dz = 0, row_loss = 0,
        labels = 0, rows = 0, flips = 0, flags = 0, total = 0;
};

__host__ __device__ inline Layout layout_of(int d0, int classes, int rows, int up, bool momentum) {
    Layout s;
    s.k4 = (d0 + 1 + 3) / 4 * 4;
    s.xs = (s.k4 + 27) / 32 * 32 + 4;
    s.up = up;
    s.c4 = (classes + 3) / 4 * 4;
    int at = 0;
    auto take = [&at](int n) {
        const int here = at;
        at += (n + 3) / 4 * 4;
        return here;
    };
    s.w1 = take(s.k4 * up);                 // (k4, up): W0's column block, bias row d0, zero padding
    s.v1 = take(momentum ? s.k4 * up : 0);  // its velocity
    s.x = take(rows * s.xs);                // (rows, xs): the minibatch, a 1 in column d0
    s.red = take(kWarps * rows * up);       // (warps, rows, up): the warps' partial products
    s.h = take(rows * up);                  // (rows, up): hidden activations
    s.dh = take(rows * up);                 // (rows, up): their gradient
    s.w2 = take(up * s.c4);                 // (up, c4): W1's rows for these units
    s.v2 = take(momentum ? up * s.c4 : 0);
    s.b2 = take(s.c4);  // the output bias, held (and updated alike) by every CTA
    s.vb2 = take(momentum ? s.c4 : 0);
    s.part = take(2 * rows * s.c4);  // (2, rows, c4): partial logits, by step parity
    s.dz = take(rows * s.c4);        // (rows, c4): logits, then their gradient
    s.row_loss = take(rows);
    s.labels = take(rows);
    s.rows = take(rows);   // the minibatch's row indices in X
    s.flips = take(rows);  // and whether each is flipped
    s.flags = take(4);
    s.total = at;
    return s;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900  // used by the kernel, which needs clusters
__device__ __forceinline__ float lane_of(const float4& v, int q) {
    return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w;
}

// PyTorch's SGD rule, as SgdUpdate applies it on the per-layer path.
__device__ __forceinline__ void sgd_step(const ResidentEpoch& e, float& w, float* v, float grad, const float* anchor) {
    float step = grad + e.weight_decay * w;
    if (anchor) step += e.prox * (w - *anchor);
    if (v) {
        step = e.momentum * *v + step;
        *v = step;
    }
    w = w - e.lr * step;
}
#endif

template <int ROWS, int UB>
__global__ void __launch_bounds__(kResidentThreads, 1)
    resident_epoch_kernel(ResidentEpoch e, int cluster_size, int units) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int MT = ROWS / 8, UP = 16 * UB, T = kResidentThreads;
    cg::cluster_group cluster = cg::this_cluster();
    const int rank = static_cast<int>(cluster.block_rank());
    const int m = blockIdx.x / cluster_size;
    if (m >= e.n_models || !e.active[m]) return;  // the whole cluster returns together
    const bool momentum = e.v_out != nullptr;
    const int d0 = e.d0, H = e.hidden, C = e.classes, tid = threadIdx.x;
    const Layout s = layout_of(d0, C, ROWS, UP, momentum);
    extern __shared__ float4 shared_raw[];
    float* const base = reinterpret_cast<float*>(shared_raw);
    float* const W1 = base + s.w1;
    float* const V1 = momentum ? base + s.v1 : nullptr;
    float* const xs = base + s.x;
    float* const red = base + s.red;
    float* const hs = base + s.h;
    float* const dh = base + s.dh;
    float* const W2 = base + s.w2;
    float* const V2 = momentum ? base + s.v2 : nullptr;
    float* const b2 = base + s.b2;
    float* const vb2 = momentum ? base + s.vb2 : nullptr;
    float* const dz = base + s.dz;
    float* const row_loss = base + s.row_loss;
    int* const labels = reinterpret_cast<int*>(base + s.labels);
    int* const rows_s = reinterpret_cast<int*>(base + s.rows);
    int* const flip_s = reinterpret_cast<int*>(base + s.flips);
    int* const flags = reinterpret_cast<int*>(base + s.flags);
    const int K4 = s.k4, XS = s.xs, C4 = s.c4;
    const int u0 = rank * units, nu = max(0, min(units, H - u0));  // this CTA's hidden units
    const long long in_row = static_cast<long long>(m) * e.w_in_stride, row = static_cast<long long>(m) * e.P;
    const float* anchor = e.anchor ? e.anchor + static_cast<long long>(m) * e.anchor_stride : nullptr;

    // The CTA's weights (and velocity) in, as asynchronous copies: all of them in flight at
    // once (one load at a time per thread left this loop waiting on memory latency: measured,
    // bench/README.md). Padding is zero and stays zero. The first step waits for them.
    for (int i = tid; i < K4 * UP; i += T) {
        const int k = i / UP, u = i % UP;
        const bool real = k <= d0 && u < nu;
        const long long at = e.w_off0 + static_cast<long long>(k) * H + u0 + u;
        if (real) __pipeline_memcpy_async(W1 + i, e.w_in + in_row + at, sizeof(float));
        else W1[i] = 0.f;
        if (momentum) {
            if (real && e.v_in) __pipeline_memcpy_async(V1 + i, e.v_in + row + at, sizeof(float));
            else V1[i] = 0.f;
        }
    }
    __pipeline_commit();
    for (int i = tid; i < UP * C4; i += T) {
        const int u = i / C4, c = i % C4;
        const bool real = u < nu && c < C;
        const long long at = e.w_off1 + static_cast<long long>(u0 + u) * C + c;
        W2[i] = real ? e.w_in[in_row + at] : 0.f;
        if (momentum) V2[i] = real && e.v_in ? e.v_in[row + at] : 0.f;
    }
    for (int c = tid; c < C4; c += T) {
        const long long at = e.w_off1 + static_cast<long long>(H) * C + c;
        b2[c] = c < C ? e.w_in[in_row + at] : 0.f;
        if (momentum) vb2[c] = c < C && e.v_in ? e.v_in[row + at] : 0.f;
    }

    const int begin = e.offsets[m], count = e.offsets[m + 1] - begin, bs = e.batch_size;
    const int steps = (count + bs - 1) / bs;
    const int lane = tid & 31, warp = tid >> 5, rg = lane >> 2, ug = lane & 3;
    const int KW = (K4 / 4 + kWarps - 1) / kWarps * 4;  // k per warp, a multiple of 4
    const int kb = min(K4, warp * KW), ke = min(K4, kb + KW);
    const bool vec = e.flip_width == 0 && d0 % 4 == 0;
    double total_loss = 0.0;  // thread 0's
    int diverged_at = -1;
    double diverged_loss = 0.0;
    // Thread r < n fetches row r's index (and flip) of the next step a step ahead, so that the
    // fetch's latency hides behind the current step's work.
    int next_row = 0, next_flip = 0;
    auto fetch = [&](int at_step) {
        const int n_at = min(bs, count - at_step * bs), at = begin + at_step * bs + tid;
        if (at_step < steps && tid < n_at) {
            next_row = e.shuffled[at];
            next_flip = e.flip_width > 0 ? e.flips[at] : 0;
        }
    };
    fetch(0);

    for (int step = 0; step < steps; ++step) {
        const int n = min(bs, count - step * bs);  // n <= ROWS (the plan)
        __syncthreads();                           // the previous step's readers of xs and rows_s are done
        if (tid < n) {
            rows_s[tid] = next_row;
            flip_s[tid] = next_flip;
        }
        __syncthreads();
        // The minibatch, a 1 in column d0 (the bias input), zeros after it and in rows >= n:
        // asynchronous copies for the features, all in flight at once.
        if (vec) {
            const int KQ = K4 / 4;
            for (int i = tid; i < ROWS * KQ; i += T) {
                const int r = i / KQ, k = (i % KQ) * 4;
                float* dst = xs + r * XS + k;
                if (r < n && k + 3 < d0) {
                    __pipeline_memcpy_async(dst, e.x + static_cast<long long>(rows_s[r]) * d0 + k, 4 * sizeof(float));
                } else {
                    *reinterpret_cast<float4*>(dst) = make_float4(r < n && k == d0 ? 1.f : 0.f, 0.f, 0.f, 0.f);
                }
            }
        } else {
            for (int i = tid; i < ROWS * K4; i += T) {
                const int r = i / K4, k = i % K4;
                if (r < n && k < d0) {
                    int kk = k;
                    if (flip_s[r]) {
                        const int w = e.flip_width, b = k - k % w;
                        kk = b + w - 1 - k % w;
                    }
                    __pipeline_memcpy_async(xs + r * XS + k, e.x + static_cast<long long>(rows_s[r]) * d0 + kk,
                                            sizeof(float));
                } else {
                    xs[r * XS + k] = r < n && k == d0 ? 1.f : 0.f;
                }
            }
        }
        __pipeline_commit();
        if (tid < n) labels[tid] = e.y[rows_s[tid]];  // in flight with the copies
        fetch(step + 1);
        __pipeline_wait_prior(0);  // this minibatch (and, at the first step, the weights)
        __syncthreads();

        // Hidden layer: each warp a k range, each lane MT rows x 4 units per block of 16.
        float acc[MT][UB][4];
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int b = 0; b < UB; ++b)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][b][j] = 0.f;
        for (int k = kb; k < ke; k += 4) {
            float4 xv[MT];
#pragma unroll
            for (int i = 0; i < MT; ++i) xv[i] = *reinterpret_cast<const float4*>(xs + (rg + 8 * i) * XS + k);
#pragma unroll
            for (int q = 0; q < 4; ++q)
#pragma unroll
                for (int b = 0; b < UB; ++b) {
                    const float4 wv = *reinterpret_cast<const float4*>(W1 + (k + q) * UP + b * 16 + ug * 4);
#pragma unroll
                    for (int i = 0; i < MT; ++i) {
                        const float xq = lane_of(xv[i], q);
                        acc[i][b][0] = fmaf(xq, wv.x, acc[i][b][0]);
                        acc[i][b][1] = fmaf(xq, wv.y, acc[i][b][1]);
                        acc[i][b][2] = fmaf(xq, wv.z, acc[i][b][2]);
                        acc[i][b][3] = fmaf(xq, wv.w, acc[i][b][3]);
                    }
                }
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int b = 0; b < UB; ++b)
                *reinterpret_cast<float4*>(red + (warp * ROWS + rg + 8 * i) * UP + b * 16 + ug * 4) = make_float4(
                    acc[i][b][0], acc[i][b][1], acc[i][b][2], acc[i][b][3]);
        __syncthreads();
        for (int o = tid; o < ROWS * UP; o += T) {
            float sum = 0.f;
#pragma unroll
            for (int w = 0; w < kWarps; ++w) sum += red[w * ROWS * UP + o];
            hs[o] = sum > 0.f ? sum : 0.f;
        }
        __syncthreads();

        // This CTA's share of the logits, then every CTA's, summed in rank order.
        float* const part = base + s.part + (step & 1) * ROWS * C4;
        for (int o = tid; o < n * C; o += T) {
            const int r = o / C, c = o % C;
            float sum = 0.f;
            for (int u = 0; u < nu; ++u) sum = fmaf(hs[r * UP + u], W2[u * C4 + c], sum);
            part[r * C4 + c] = sum;
        }
        cluster.sync();
        for (int o = tid; o < n * C; o += T) {
            const int r = o / C, c = o % C;
            float from[kMaxCluster];  // every rank's share loaded first: the loads overlap
#pragma unroll
            for (int q = 0; q < kMaxCluster; ++q)
                if (q < cluster_size) from[q] = cluster.map_shared_rank(part, q)[r * C4 + c];
            float z = b2[c];
#pragma unroll
            for (int q = 0; q < kMaxCluster; ++q)
                if (q < cluster_size) z += from[q];
            dz[r * C4 + c] = z;
        }
        __syncthreads();

        // Softmax cross-entropy of each row: dz = (softmax - onehot) / n.
        if (tid < n) {
            float* z = dz + tid * C4;
            const int label = labels[tid];
            const float top = max_logit(z, C);
            const float z_label = z[label];
            const float total = sum_shifted_exp(z, C, top, z);
            row_loss[tid] = logf(total) + top - z_label;
            const float inv_rows = 1.f / static_cast<float>(n), scale = inv_rows / total;
            for (int c = 0; c < C; ++c) z[c] *= scale;
            z[label] -= inv_rows;
        }
        __syncthreads();
        if (warp == 0) {  // the step's loss: a fixed-order tree over the rows (n <= 32)
            double loss = lane < n ? static_cast<double>(row_loss[lane]) : 0.0;
#pragma unroll
            for (int offset = 16; offset > 0; offset /= 2) loss += __shfl_down_sync(0xffffffffu, loss, offset);
            if (lane == 0) {
                flags[0] = isfinite(loss) ? 0 : 1;
                if (isfinite(loss)) total_loss += loss;
                else diverged_loss = loss;
            }
        }
        __syncthreads();
        if (flags[0]) {  // the same in every CTA of the cluster: the logits are bit-identical
            diverged_at = step;
            break;
        }

        // The hidden gradient, with the second layer's weights before their step.
        for (int o = tid; o < n * UP; o += T) {
            const int r = o / UP, u = o % UP;
            float sum = 0.f;
            if (hs[o] > 0.f)
                for (int c = 0; c < C; ++c) sum = fmaf(dz[r * C4 + c], W2[u * C4 + c], sum);
            dh[o] = sum;
        }
        __syncthreads();

        // The second layer's step: this CTA's rows of W1, and the output bias (every CTA alike).
        for (int o = tid; o < nu * C; o += T) {
            const int u = o / C, c = o % C;
            float grad = 0.f;
            for (int r = 0; r < n; ++r) grad = fmaf(hs[r * UP + u], dz[r * C4 + c], grad);
            const long long at = e.w_off1 + static_cast<long long>(u0 + u) * C + c;
            sgd_step(e, W2[u * C4 + c], momentum ? V2 + u * C4 + c : nullptr, grad, anchor ? anchor + at : nullptr);
        }
        for (int c = T - 1 - tid; c < C; c += T) {  // the last threads: the first ones did W1's rows
            float grad = 0.f;
            for (int r = 0; r < n; ++r) grad += dz[r * C4 + c];
            const long long at = e.w_off1 + static_cast<long long>(H) * C + c;
            sgd_step(e, b2[c], momentum ? vb2 + c : nullptr, grad, anchor ? anchor + at : nullptr);
        }

        // The first layer's step: each thread 4 inputs x 4 units, summed over the rows.
        constexpr int UQ = UP / 4;
        // Items start past the threads that took the second layer's weights, to even the load.
        for (int it = (tid + T - (nu * C) % T) % T; it < (K4 / 4) * UQ; it += T) {
            const int k = (it / UQ) * 4, u = (it % UQ) * 4;
            if (k > d0 || u >= nu) continue;  // padding only
            float g[4][4];
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) g[a][b] = 0.f;
            for (int r = 0; r < n; ++r) {
                const float4 xv = *reinterpret_cast<const float4*>(xs + r * XS + k);
                const float4 dv = *reinterpret_cast<const float4*>(dh + r * UP + u);
#pragma unroll
                for (int a = 0; a < 4; ++a) {
                    const float xa = lane_of(xv, a);
                    g[a][0] = fmaf(xa, dv.x, g[a][0]);
                    g[a][1] = fmaf(xa, dv.y, g[a][1]);
                    g[a][2] = fmaf(xa, dv.z, g[a][2]);
                    g[a][3] = fmaf(xa, dv.w, g[a][3]);
                }
            }
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    if (k + a > d0 || u + b >= nu) continue;
                    const int i = (k + a) * UP + u + b;
                    const long long at = e.w_off0 + static_cast<long long>(k + a) * H + u0 + u + b;
                    sgd_step(e, W1[i], momentum ? V1 + i : nullptr, g[a][b], anchor ? anchor + at : nullptr);
                }
        }
        // The next step's first barrier orders these updates before their readers.
    }
    __pipeline_wait_prior(0);  // the weights, where no step ran
    __syncthreads();
    cluster.sync();  // no CTA leaves while another may still read its partial logits
    if (rank == 0 && tid == 0) {
        e.loss_sum[m] = diverged_at >= 0 ? diverged_loss : total_loss;
        if (diverged_at >= 0) e.diverged_step[m] = diverged_at;
    }
    if (diverged_at >= 0) return;  // the epoch's start is restored by finish_kernel
    bool bad = false;
    for (int i = tid; i < K4 * UP; i += T) {
        const int k = i / UP, u = i % UP;
        if (k > d0 || u >= nu) continue;
        const long long at = row + e.w_off0 + static_cast<long long>(k) * H + u0 + u;
        e.w_out[at] = W1[i];
        bad |= !isfinite(W1[i]);
        if (momentum) e.v_out[at] = V1[i];
    }
    for (int i = tid; i < UP * C4; i += T) {
        const int u = i / C4, c = i % C4;
        if (u >= nu || c >= C) continue;
        const long long at = row + e.w_off1 + static_cast<long long>(u0 + u) * C + c;
        e.w_out[at] = W2[i];
        bad |= !isfinite(W2[i]);
        if (momentum) e.v_out[at] = V2[i];
    }
    if (rank == 0)
        for (int c = tid; c < C; c += T) {
            const long long at = row + e.w_off1 + static_cast<long long>(H) * C + c;
            e.w_out[at] = b2[c];
            bad |= !isfinite(b2[c]);
            if (momentum) e.v_out[at] = vb2[c];
        }
    if (bad) e.non_finite[m] = 1;
#endif
}

using KernelFn = void (*)(ResidentEpoch, int, int);

KernelFn kernel_for(int rows, int unit_blocks) {
    if (rows == 8) return unit_blocks == 1 ? resident_epoch_kernel<8, 1> : resident_epoch_kernel<8, 2>;
    if (rows == 16) return unit_blocks == 1 ? resident_epoch_kernel<16, 1> : resident_epoch_kernel<16, 2>;
    return unit_blocks == 1 ? resident_epoch_kernel<32, 1> : resident_epoch_kernel<32, 2>;
}

cudaLaunchConfig_t launch_config(const ResidentPlan& plan, int n_models, cudaLaunchAttribute* attribute) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(n_models) * plan.cluster);
    config.blockDim = dim3(kResidentThreads);
    config.dynamicSmemBytes = plan.smem;
    attribute->id = cudaLaunchAttributeClusterDimension;
    attribute->val.clusterDim.x = plan.cluster;
    attribute->val.clusterDim.y = 1;
    attribute->val.clusterDim.z = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    return config;
}

bool resident_allowed() {
    const char* choice = std::getenv("SEGFAST_CUDA_KERNELS");
    return !choice || std::string(choice) == "auto" || std::string(choice) == "resident";
}

bool resident_forced() {
    const char* choice = std::getenv("SEGFAST_CUDA_KERNELS");
    return choice && std::string(choice) == "resident";
}

}  // namespace

ResidentPlan plan_resident(const Arch& arch, int n_active, int max_rows, bool momentum, bool one_step) {
    ResidentPlan best;
    if (!resident_allowed() || arch.n_layers() != 2 || max_rows < 1 || max_rows > 32 || n_active < 1) return best;
    int device = 0, major = 0, optin = 0;
    SEGFAST_CUDA(cudaGetDevice(&device));
    SEGFAST_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    SEGFAST_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (major < 9) return best;  // thread-block clusters
    const int H = arch.dims[1], rows = max_rows <= 8 ? 8 : max_rows <= 16 ? 16 : 32;
    double best_cost = 0.0;
    // An epoch of one step saves the resident kernel only one pass over the weights, and a
    // cluster of CTAs per model then lost to the per-layer path on an H200, while a model in one
    // CTA won (bench/README.md): clusters only where an epoch has several steps.
    const int largest = one_step && !resident_forced() ? 1 : 16;
    for (int cluster : {1, 2, 4, 8, 16}) {
        if (cluster > largest) break;
        const int units = (H + cluster - 1) / cluster;
        if ((cluster - 1) * units >= H) continue;  // a CTA would hold no unit
        const int unit_blocks = (units + 15) / 16;
        if (unit_blocks > 2) continue;
        ResidentPlan plan;
        plan.cluster = cluster;
        plan.units = units;
        plan.rows = rows;
        plan.unit_blocks = unit_blocks;
        plan.smem = sizeof(float) * layout_of(arch.n_in(), arch.n_out(), rows, 16 * unit_blocks, momentum).total;
        const std::string tried = std::to_string(cluster) + ":";
        if (plan.smem > static_cast<std::size_t>(optin)) {
            best.considered += tried + "too big ";
            continue;
        }
        const KernelFn kernel = kernel_for(rows, unit_blocks);
        SEGFAST_CUDA(
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(plan.smem)));
        if (cluster > 8) SEGFAST_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        cudaLaunchAttribute attribute;
        const cudaLaunchConfig_t config = launch_config(plan, cluster, &attribute);
        int active_clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&active_clusters, kernel, &config) != cudaSuccess || active_clusters < 1) {
            cudaGetLastError();  // this size does not fit on the device: try the next
            best.considered += tried + "none ";
            continue;
        }
        best.considered += tried + std::to_string(active_clusters) + " ";
        // Waves of clusters, each as long as a CTA's share of units (plus the per-step work
        // that does not shrink with it: the gather, the logits, the softmax).
        const double waves = std::ceil(static_cast<double>(n_active) / active_clusters);
        const double cost = waves * (16.0 * unit_blocks + 8.0);
        if (!best.ok || cost < best_cost) {
            plan.considered = best.considered;
            plan.active_clusters = active_clusters;
            best = plan;
            best.ok = true;
            best_cost = cost;
        }
    }
    return best;
}

void launch_resident(const ResidentPlan& plan, const ResidentEpoch& epoch) {
    cudaLaunchAttribute attribute;
    const cudaLaunchConfig_t config = launch_config(plan, epoch.n_models, &attribute);
    SEGFAST_CUDA(cudaLaunchKernelEx(&config, kernel_for(plan.rows, plan.unit_blocks), epoch, plan.cluster, plan.units));
    SEGFAST_CUDA_LAUNCHED("resident_epoch_kernel");
}

}  // namespace segfast::cuda
