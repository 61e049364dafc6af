// Training on the GPU. One epoch is a sequence of steps; each step is a handful of launches
// that serve every model at once: gather the minibatches, the forward products, softmax
// cross-entropy, and per layer the backward product and the weight-gradient product with the
// SGD update in its epilogue. The shuffles run on the host with the CPU path's random
// streams, so both paths pick the same minibatches in the same order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "../rng.h"
#include "../softmax.h"
#include "../threads.h"
#include "device.h"
#include "forward.cuh"
#include "resident_epoch.h"
#include "sgd_update.cuh"

namespace segfast::cuda {

namespace {

// The step's minibatch of each model into xb (n_models, bs, d0), flipped where drawn; rows
// past the model's count are zero so that padded rows stay finite and add nothing.
__global__ void gather_kernel(int n_models, int step, int bs, int M, int d0, int flip_width, const float* x,
                              const int* y, const int* shuffled, const unsigned char* flips, const int* offsets,
                              const unsigned char* active, const int* diverged_step, int* rows, float* xb,
                              int* labels) {
    const int m = blockIdx.x;
    if (m >= n_models) return;
    const int begin = offsets[m], count = offsets[m + 1] - begin, start = step * bs;
    const int n = (active[m] && diverged_step[m] < 0 && start < count) ? min(bs, count - start) : 0;
    if (threadIdx.x == 0) rows[m] = n;
    if (n == 0) return;
    for (int r = 0; r < M; ++r) {
        float* dst = xb + (static_cast<long long>(m) * bs + r) * d0;
        if (r >= n) {
            for (int c = threadIdx.x; c < d0; c += blockDim.x) dst[c] = 0.f;
            continue;
        }
        const int at = begin + start + r, src_row = shuffled[at];
        if (threadIdx.x == 0) labels[m * bs + r] = y[src_row];
        const float* src = x + static_cast<long long>(src_row) * d0;
        if (flip_width > 0 && flips[at]) {
            for (int c = threadIdx.x; c < d0; c += blockDim.x) {
                const int base = c - c % flip_width;
                dst[c] = src[base + flip_width - 1 - c % flip_width];
            }
        } else {
            for (int c = threadIdx.x; c < d0; c += blockDim.x) dst[c] = src[c];
        }
    }
}

// One warp per model: the summed loss of its rows and dLoss/dlogits = (softmax - onehot) / n.
// A non-finite loss stops the model (rows = 0) before anything is updated, as on the CPU.
__global__ void softmax_xent_kernel(int n_models, int M, int C, int bs, const float* logits, const int* labels,
                                    int step, int* rows, int* diverged_step, double* loss_sum, float* dz,
                                    long long dz_stride) {
    const int m = blockIdx.x, lane = threadIdx.x;
    if (m >= n_models) return;
    const int n = rows[m];
    if (n == 0) return;
    const float inv_rows = 1.f / static_cast<float>(n);
    double loss = 0.0;
    for (int r = lane; r < M; r += 32) {
        float* g = dz + m * dz_stride + static_cast<long long>(r) * C;
        if (r >= n) {
            for (int c = 0; c < C; ++c) g[c] = 0.f;
            continue;
        }
        const float* z = logits + (static_cast<long long>(m) * bs + r) * C;
        const float top = max_logit(z, C);
        const float total = sum_shifted_exp(z, C, top, g);
        const int label = labels[m * bs + r];
        loss += static_cast<double>(logf(total) + top - z[label]);
        const float scale = inv_rows / total;
        for (int c = 0; c < C; ++c) g[c] *= scale;
        g[label] -= inv_rows;
    }
    for (int offset = 16; offset > 0; offset /= 2) loss += __shfl_down_sync(0xffffffffu, loss, offset);
    if (lane == 0) {
        if (!isfinite(loss)) {
            loss_sum[m] = loss;
            diverged_step[m] = step;
            rows[m] = 0;
        } else {
            loss_sum[m] += loss;
        }
    }
}

// End of an epoch: a model whose loss or weights turned non-finite goes back to where the
// epoch began, and stops. Without a broadcast the epoch wrote into a second buffer (w, v) while
// the first (w_start, v_start) kept the epoch's start: rows that trained and stayed finite are
// done; the others are copied over from the start. After a broadcast w, v are the only buffer.
__global__ void finish_kernel(int n_models, long long P, const unsigned char* active, const int* offsets,
                              int* diverged_step, const int* non_finite, double* loss_sum, const float* start_row,
                              const float* w_start, const float* v_start, float* w, float* v, unsigned char* diverged,
                              unsigned char* kept) {
    const int m = blockIdx.x;
    if (m >= n_models) return;
    const bool trained = active[m];
    int step = diverged_step[m];
    if (trained && step < 0 && non_finite[m]) step = 1;  // the weights overflowed after some step
    const bool bad = trained && step >= 0;
    if (threadIdx.x == 0) {
        const double nan = __longlong_as_double(0x7ff8000000000000LL);
        diverged[m] = bad;
        kept[m] = trained && !bad;
        const int count = offsets[m + 1] - offsets[m];
        const bool overflowed = bad && diverged_step[m] < 0;  // a finite loss, but weights that are not
        loss_sum[m] = !trained || overflowed ? nan : count > 0 ? loss_sum[m] / count : 0.0;
    }
    if (start_row ? !bad : trained && !bad) return;
    for (long long j = threadIdx.x; j < P; j += blockDim.x) {
        w[m * P + j] = start_row ? start_row[j] : w_start[m * P + j];
        if (v) v[m * P + j] = start_row ? 0.f : v_start[m * P + j];
    }
}

// out[j] = sum over kept models of weights[m] * params[m][j], in model order, in float64.
__global__ void weighted_sum_kernel(int n_models, long long P, const float* params, const double* weights,
                                    const unsigned char* kept, double* out) {
    const long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (j >= P) return;
    double sum = 0.0;
    for (int m = 0; m < n_models; ++m)
        if (kept[m] && weights[m] != 0.0) sum += weights[m] * params[m * P + j];
    out[j] = sum;
}

void launch_weighted_sum(int n_models, long long P, const float* params, const double* weights,
                         const unsigned char* kept, double* out) {
    weighted_sum_kernel<<<static_cast<unsigned>((P + 255) / 256), 256>>>(n_models, P, params, weights, kept, out);
    SEGFAST_CUDA_LAUNCHED("weighted_sum_kernel");
}

}  // namespace

bool tiled_only() {
    const char* choice = std::getenv("SEGFAST_CUDA_KERNELS");
    return choice && std::string(choice) == "tiled";
}

bool resident_only() {
    const char* choice = std::getenv("SEGFAST_CUDA_KERNELS");
    return choice && std::string(choice) == "resident";
}

struct Trainer::Impl {
    Arch arch;
    int n_models = 0;
    // params/velocity hold the models; an epoch without a broadcast writes its first step into
    // params_next/velocity_next (the start stays intact for rollbacks, at no extra traffic), and
    // the pairs swap at its end.
    DeviceArray<float> x, params, velocity, params_next, velocity_next, anchor, start_row;
    DeviceArray<int> y;
    long long anchor_stride = 0;  // 0: one row for every model (a broadcast), else n_params
    // Per-epoch and per-step state.
    DeviceArray<int> shuffled, offsets, rows, diverged_step, non_finite, labels;
    DeviceArray<unsigned char> flips, active, diverged, kept;
    DeviceArray<double> loss_sum, merge_weights, merged;
    DeviceArray<float> xb, dz, dz_next;
    std::vector<DeviceArray<float>> act;  // act[l]: layer l's output, (n_models, bs, dims[l+1])
    int bs = 0;

    explicit Impl(const std::vector<int>& dims) : arch(dims) {}

    // The epoch step by step, a few launches per layer and step: any depth and batch size.
    void layered_steps(const EpochArgs& a, const std::vector<std::int64_t>& counts, std::int64_t longest,
                       const float* w_start, const float* v_start, float* w_out, float* v_out, float prox);

    void buffers(int batch_size) {
        if (batch_size == bs && xb.size() == static_cast<std::size_t>(n_models) * bs * arch.n_in()) return;
        bs = batch_size;
        const std::size_t per_row = static_cast<std::size_t>(n_models) * bs;
        xb.resize(per_row * arch.n_in());
        dz.resize(per_row * arch.widest());
        dz_next.resize(per_row * arch.widest());
        labels.resize(per_row);
        act.resize(arch.n_layers());
        for (int l = 0; l < arch.n_layers(); ++l) act[l].resize(per_row * arch.dims[l + 1]);
    }
};

std::string unavailable_reason() {
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
        cudaGetLastError();  // clear it: the reason is reported, not raised
        return std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
    }
    if (count == 0) return "no CUDA device is visible";
    return "";
}

std::string device_name() {
    int device = 0;
    SEGFAST_CUDA(cudaGetDevice(&device));
    cudaDeviceProp prop;
    SEGFAST_CUDA(cudaGetDeviceProperties(&prop, device));
    return prop.name;
}

std::size_t memory_in_use() {
    std::size_t free = 0, total = 0;
    SEGFAST_CUDA(cudaMemGetInfo(&free, &total));
    return total - free;
}

Trainer::Trainer(const std::vector<int>& dims, const float* x, std::int64_t n_rows, const std::int64_t* y)
    : impl_(std::make_unique<Impl>(dims)) {
    SEGFAST_REQUIRE(n_rows < std::numeric_limits<int>::max(), "too many rows for the CUDA path");
    impl_->x.upload(x, static_cast<std::size_t>(n_rows) * impl_->arch.n_in());
    std::vector<int> labels(y, y + n_rows);
    impl_->y.upload(labels.data(), labels.size());
    SEGFAST_CUDA(cudaDeviceSynchronize());
}

Trainer::~Trainer() = default;

int Trainer::n_models() const { return impl_->n_models; }

void Trainer::resize_models(int n_models) {
    Impl& s = *impl_;
    const std::size_t total = static_cast<std::size_t>(n_models) * s.arch.n_params;
    if (n_models != s.n_models) {
        s.params.resize(total);
        if (s.velocity.size()) {
            s.velocity.resize(total);
            SEGFAST_CUDA(cudaMemset(s.velocity.get(), 0, total * sizeof(float)));
        }
    }
    s.n_models = n_models;
}

void Trainer::set_models(const float* params, int n_models) {
    resize_models(n_models);
    Impl& s = *impl_;
    const std::size_t total = static_cast<std::size_t>(n_models) * s.arch.n_params;
    s.params.upload(params, total);
    if (s.velocity.size()) SEGFAST_CUDA(cudaMemset(s.velocity.get(), 0, total * sizeof(float)));
}

void Trainer::get_models(float* params) const {
    impl_->params.download(params, static_cast<std::size_t>(impl_->n_models) * impl_->arch.n_params);
}

void Trainer::set_anchor(const float* row) {
    Impl& s = *impl_;
    const std::size_t P = s.arch.n_params;
    if (row) {
        s.anchor.upload(row, P);
        s.anchor_stride = 0;
    } else {
        s.anchor.resize(static_cast<std::size_t>(s.n_models) * P);
        SEGFAST_CUDA(
            cudaMemcpy(s.anchor.get(), s.params.get(), s.n_models * P * sizeof(float), cudaMemcpyDeviceToDevice));
        s.anchor_stride = static_cast<long long>(P);
    }
}

void Trainer::Impl::layered_steps(const EpochArgs& a, const std::vector<std::int64_t>& counts, std::int64_t longest,
                                  const float* w_start, const float* v_start, float* w_out, float* v_out, float prox) {
    Impl& s = *this;
    const EpochConfig& cfg = a.config;
    const int N = n_models, L = arch.n_layers(), bs = cfg.batch_size;
    const long long P = static_cast<long long>(arch.n_params);
    buffers(bs);
    const std::int64_t steps = (longest + bs - 1) / bs;
    const long long x_stride = static_cast<long long>(bs) * arch.n_in();
    const long long dz_stride = static_cast<long long>(bs) * arch.widest();
    std::vector<float*> act_ptr(L);
    std::vector<long long> act_stride(L);
    for (int l = 0; l < L; ++l) {
        act_ptr[l] = s.act[l].get();
        act_stride[l] = static_cast<long long>(bs) * arch.dims[l + 1];
    }
    for (std::int64_t step = 0; step < steps; ++step) {
        int M = 0;  // the widest minibatch of this step
        for (std::int64_t c : counts)
            if (c > step * bs)
                M = static_cast<int>(std::max<std::int64_t>(M, std::min<std::int64_t>(bs, c - step * bs)));
        gather_kernel<<<N, 256>>>(N, static_cast<int>(step), bs, M, arch.n_in(), cfg.flip_width, s.x.get(), s.y.get(),
                                  s.shuffled.get(), s.flips.get(), s.offsets.get(), s.active.get(),
                                  s.diverged_step.get(), s.rows.get(), s.xb.get(), s.labels.get());
        SEGFAST_CUDA_LAUNCHED("gather_kernel");
        // The first step reads the epoch's start: the broadcast row itself (the broadcast is
        // fused in), or the first buffer; it writes w_out, where the later steps read and write.
        const bool first = step == 0, broadcast = first && a.start_row;
        const float* w_in = broadcast ? s.start_row.get() : first ? w_start : w_out;
        const float* v_in = broadcast ? nullptr : first ? v_start : v_out;
        const long long w_in_stride = broadcast ? 0 : P;
        forward_all(arch, w_in, w_in_stride, s.xb.get(), x_stride, N, M, s.rows.get(), act_ptr, act_stride);
        softmax_xent_kernel<<<N, 32>>>(N, M, arch.n_out(), bs, act_ptr[L - 1], s.labels.get(), static_cast<int>(step),
                                       s.rows.get(), s.diverged_step.get(), s.loss_sum.get(), s.dz.get(), dz_stride);
        SEGFAST_CUDA_LAUNCHED("softmax_xent_kernel");

        float* grad = s.dz.get();
        float* grad_next = s.dz_next.get();
        for (int l = L - 1; l >= 0; --l) {
            const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
            const float* in = l == 0 ? s.xb.get() : act_ptr[l - 1];
            const long long in_stride = l == 0 ? x_stride : act_stride[l - 1];
            if (l > 0) {  // grad_next (M, d_in) = (grad @ W^T) * relu'(in), before W changes
                Operand g{grad, dz_stride, d_out, 1};
                Operand wt{w_in + arch.w_off[l], w_in_stride, 1, d_out};
                product(N, M, d_in, d_out, g, wt, s.rows.get(),
                        ReluGradient{grad_next, dz_stride, d_in, act_ptr[l - 1], act_stride[l - 1]});
            }
            // The layer's weights and bias (d_in + 1, d_out) -= lr * ([in, 1]^T @ grad + ...).
            SgdUpdate update{w_in,
                             w_in_stride,
                             v_in,
                             w_out,
                             v_out,
                             prox > 0.f ? s.anchor.get() : nullptr,
                             s.anchor_stride,
                             s.non_finite.get(),
                             P,
                             static_cast<long long>(arch.w_off[l]),
                             d_out,
                             cfg.sgd.lr,
                             cfg.sgd.momentum,
                             cfg.sgd.weight_decay,
                             prox};
            sgd_update(N, d_in, d_out, M, in, in_stride, grad, dz_stride, s.rows.get(), update);
            std::swap(grad, grad_next);
        }
    }
}

void Trainer::epoch(const EpochArgs& a, const EpochOutputs& out) {
    Impl& s = *impl_;
    const Arch& arch = s.arch;
    const EpochConfig& cfg = a.config;
    const int N = s.n_models, bs = cfg.batch_size;
    const long long P = static_cast<long long>(arch.n_params);
    if (N == 0) return;
    const bool momentum = cfg.sgd.momentum > 0.f;
    if (momentum && s.velocity.size() != static_cast<std::size_t>(N) * P) {
        s.velocity.resize(static_cast<std::size_t>(N) * P);
        SEGFAST_CUDA(cudaMemset(s.velocity.get(), 0, s.velocity.size() * sizeof(float)));
    }
    const bool two_buffers = !a.start_row;
    if (two_buffers) {
        s.params_next.resize(static_cast<std::size_t>(N) * P);
        if (momentum) s.velocity_next.resize(static_cast<std::size_t>(N) * P);
    }
    float* w_start = s.params.get();
    float* v_start = momentum ? s.velocity.get() : nullptr;
    float* w_out = two_buffers ? s.params_next.get() : w_start;
    float* v_out = momentum ? (two_buffers ? s.velocity_next.get() : v_start) : nullptr;

    // Host: each model's shuffle (and flips) from its own stream, exactly as the CPU path draws them.
    const std::int64_t total = a.offsets[N];
    std::vector<int> shuffled(static_cast<std::size_t>(total)), offsets(N + 1);
    std::vector<unsigned char> flips(cfg.flip_width > 0 ? static_cast<std::size_t>(total) : 1, 0);
    for (int m = 0; m <= N; ++m) offsets[m] = static_cast<int>(a.offsets[m]);
    parallel_for(N, std::max(1, std::min(cfg.n_threads, N)), [&](long m, int) {
        if (!a.active[m]) return;
        const std::int64_t begin = a.offsets[m], count = a.offsets[m + 1] - begin;
        int* rows = shuffled.data() + begin;
        std::copy(a.order + begin, a.order + begin + count, rows);
        Stream stream(cfg.seed, static_cast<std::uint64_t>(cfg.first_model + m),
                      static_cast<std::uint64_t>(a.epoch[m]));
        stream.shuffle(rows, count);  // the swaps depend on positions only: the CPU's order, as ints
        if (cfg.flip_width > 0)
            for (std::int64_t i = 0; i < count; ++i) flips[begin + i] = static_cast<unsigned char>(stream.next() >> 63);
    });
    s.shuffled.upload(shuffled.data(), shuffled.size());
    s.flips.upload(flips.data(), flips.size());
    s.offsets.upload(offsets.data(), offsets.size());
    s.active.upload(a.active, N);
    s.rows.resize(N);
    s.diverged_step.resize(N);
    s.non_finite.resize(N);
    s.loss_sum.resize(N);
    s.diverged.resize(N);
    s.kept.resize(N);
    SEGFAST_CUDA(cudaMemset(s.diverged_step.get(), 0xff, N * sizeof(int)));  // -1: not diverged
    SEGFAST_CUDA(cudaMemset(s.non_finite.get(), 0, N * sizeof(int)));
    SEGFAST_CUDA(cudaMemset(s.loss_sum.get(), 0, N * sizeof(double)));
    if (a.start_row) s.start_row.upload(a.start_row, P);

    // The host knows every segment's size, so each step's widest minibatch too.
    std::vector<std::int64_t> counts;
    std::int64_t longest = 0;
    for (int m = 0; m < N; ++m)
        if (a.active[m]) {
            counts.push_back(a.offsets[m + 1] - a.offsets[m]);
            longest = std::max(longest, counts.back());
        }
    const float prox = s.anchor.size() ? cfg.sgd.prox : 0.f;  // no anchor set: no proximal term
    const ResidentPlan plan = plan_resident(arch, static_cast<int>(counts.size()),
                                            static_cast<int>(std::min<std::int64_t>(bs, longest)), momentum,
                                            longest <= bs);
    SEGFAST_REQUIRE(plan.ok || counts.empty() || !resident_only(),
                    "SEGFAST_CUDA_KERNELS=resident, but the resident kernel cannot serve this epoch");
    if (plan.ok) {
        ResidentEpoch e;
        e.n_models = N;
        e.d0 = arch.n_in();
        e.hidden = arch.dims[1];
        e.classes = arch.n_out();
        e.batch_size = bs;
        e.flip_width = cfg.flip_width;
        e.P = P;
        e.w_off0 = static_cast<long long>(arch.w_off[0]);
        e.w_off1 = static_cast<long long>(arch.w_off[1]);
        e.x = s.x.get();
        e.y = s.y.get();
        e.shuffled = s.shuffled.get();
        e.flips = s.flips.get();
        e.offsets = s.offsets.get();
        e.active = s.active.get();
        e.w_in = a.start_row ? s.start_row.get() : w_start;
        e.w_in_stride = a.start_row ? 0 : P;
        e.v_in = a.start_row ? nullptr : v_start;
        e.w_out = w_out;
        e.v_out = v_out;
        e.anchor = prox > 0.f ? s.anchor.get() : nullptr;
        e.anchor_stride = s.anchor_stride;
        e.lr = cfg.sgd.lr;
        e.momentum = cfg.sgd.momentum;
        e.weight_decay = cfg.sgd.weight_decay;
        e.prox = prox;
        e.diverged_step = s.diverged_step.get();
        e.non_finite = s.non_finite.get();
        e.loss_sum = s.loss_sum.get();
        launch_resident(plan, e);
    } else {
        s.layered_steps(a, counts, longest, w_start, v_start, w_out, v_out, prox);
    }

    finish_kernel<<<N, 256>>>(N, P, s.active.get(), s.offsets.get(), s.diverged_step.get(), s.non_finite.get(),
                              s.loss_sum.get(), a.start_row ? s.start_row.get() : nullptr, w_start, v_start, w_out,
                              v_out, s.diverged.get(), s.kept.get());
    SEGFAST_CUDA_LAUNCHED("finish_kernel");
    if (two_buffers) {
        std::swap(s.params, s.params_next);
        if (momentum) std::swap(s.velocity, s.velocity_next);
    }
    if (a.merge_weights) {
        s.merge_weights.upload(a.merge_weights, N);
        s.merged.resize(P);
        launch_weighted_sum(N, P, s.params.get(), s.merge_weights.get(), s.kept.get(), s.merged.get());
        s.merged.download(out.merged, P);
    }
    s.loss_sum.download(out.mean_loss, N);
    s.diverged.download(out.diverged, N);
}

}  // namespace segfast::cuda
