// Prediction and evaluation on the GPU: every model on the same rows, the rows
// in chunks so that the activations of all models fit in a bounded amount of device memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>

#include "../arch.h"
#include "../softmax.h"
#include "batched_gemm.cuh"
#include "dense_forward.cuh"
#include "device.h"

namespace segfast::cuda {

namespace {

// In-place softmax (or log-softmax) of each (model, row) of logits (n_models, rows, C).
__global__ void softmax_kernel(int n_models, int rows, int C, float* z, long long model_stride, bool log) {
    const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (t >= static_cast<long long>(n_models) * rows) return;
    float* row = z + (t / rows) * model_stride + (t % rows) * C;
    const float top = max_logit(row, C);
    const float total = sum_shifted_exp(row, C, top);
    if (log) {  // computed from the logits, so that tiny probabilities do not underflow to log(0)
        const float shift = top + logf(total);
        for (int c = 0; c < C; ++c) row[c] -= shift;
        return;
    }
    const float inv = 1.f / total;
    for (int c = 0; c < C; ++c) row[c] = expf(row[c] - top) * inv;
}

// One block per model: adds the chunk's summed cross-entropy and correct count to the model's
// totals, reduced in a fixed order so the result does not vary from run to run.
__global__ void score_kernel(int rows, int C, const float* logits, long long model_stride, const int* y, double* loss,
                             double* correct) {
    const int m = blockIdx.x;
    __shared__ double part_loss[256], part_correct[256];
    double l = 0.0, k = 0.0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const float* z = logits + m * model_stride + static_cast<long long>(r) * C;
        const int best = argmax_logit(z, C);
        const float total = sum_shifted_exp(z, C, z[best]);
        l += static_cast<double>(logf(total) + z[best] - z[y[r]]);
        k += best == y[r];
    }
    part_loss[threadIdx.x] = l;
    part_correct[threadIdx.x] = k;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            part_loss[threadIdx.x] += part_loss[threadIdx.x + half];
            part_correct[threadIdx.x] += part_correct[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss[m] += part_loss[0];
        correct[m] += part_correct[0];
    }
}

// Rows per chunk: the hidden activations of every model for a chunk stay within ~1 GiB.
int chunk_rows(const Arch& arch, int n_models, std::int64_t n_rows) {
    std::size_t per_row = 0;
    for (int l = 1; l <= arch.n_layers(); ++l) per_row += static_cast<std::size_t>(arch.dims[l]);
    per_row *= static_cast<std::size_t>(n_models) * sizeof(float);
    const std::size_t budget = std::size_t(1) << 30;
    const std::int64_t fit = std::max<std::int64_t>(64, static_cast<std::int64_t>(budget / per_row) / 64 * 64);
    return static_cast<int>(std::min<std::int64_t>({fit, n_rows, 1 << 20}));
}

// The forward pass of chunk [r0, r0 + rows): the hidden layers by the tiled dense kernel, the
// output layer into (out, model stride out_stride) as logits, probabilities or log-probabilities.
void forward_chunk(const Arch& arch, const float* params, const float* x, int n_models, std::int64_t r0, int rows,
                   std::vector<DeviceArray<float>>& hidden, float* out, long long out_stride, OutputMode mode) {
    const int L = arch.n_layers(), C = arch.n_out();
    const long long P = static_cast<long long>(arch.n_params);
    const float* in = x + r0 * arch.n_in();
    long long in_stride = 0;  // every model reads the same rows
    for (int l = 0; l + 1 < L; ++l) {
        const long long stride = static_cast<long long>(rows) * arch.dims[l + 1];
        dense_relu(n_models, rows, arch.dims[l + 1], arch.dims[l], in, in_stride, params, P,
                   static_cast<long long>(arch.w_off[l]), hidden[l].get(), stride);
        in = hidden[l].get();
        in_stride = stride;
    }
    const int K = arch.dims[L - 1];
    if (output_fits(K, C)) {
        output_layer(n_models, rows, C, K, in, in_stride, params, P, static_cast<long long>(arch.w_off[L - 1]), out,
                     out_stride, mode);
        return;
    }
    // Many classes: the tiled product for the logits, then the softmax in place.
    Operand a{in, in_stride, K, 1, -1, K};  // (rows, K) with a column of ones for the bias
    Operand b{params + arch.w_off[L - 1], P, C, 1};
    batched_gemm(n_models, rows, C, K + 1, a, b, nullptr, StoreActivation{out, out_stride, C, false});
    if (mode == OutputMode::logits) return;
    const long long threads = static_cast<long long>(n_models) * rows;
    softmax_kernel<<<static_cast<unsigned>((threads + 255) / 256), 256>>>(n_models, rows, C, out, out_stride,
                                                                          mode == OutputMode::log_proba);
    SEGFAST_CUDA_LAUNCHED("softmax_kernel");
}

// Device buffers kept from call to call, growing only: allocating and freeing W4's 600 MB on
// every call cost about as much as its products (bench/README.md). One call at a time uses them.
struct Buffers {
    DeviceArray<float> params, x, out;
    std::vector<DeviceArray<float>> hidden;
    DeviceArray<int> y;
    DeviceArray<double> loss, correct;
};
std::mutex buffers_lock;
Buffers& buffers() {
    static Buffers* b = new Buffers();  // never freed: device memory freed after the driver shut down would fail
    return *b;
}

void reserve_hidden(Buffers& b, const Arch& arch, int n_models, int rows) {
    b.hidden.resize(std::max<std::size_t>(b.hidden.size(), arch.n_layers()));
    for (int l = 0; l + 1 < arch.n_layers(); ++l)
        b.hidden[l].reserve(static_cast<std::size_t>(n_models) * rows * arch.dims[l + 1]);
}

}  // namespace

void predict_proba(const std::vector<int>& dims, const float* params, int n_models, const float* x, std::int64_t n_rows,
                   float* out, bool log) {
    const Arch arch(dims);
    const int C = arch.n_out();
    if (n_models == 0 || n_rows == 0) return;
    std::lock_guard<std::mutex> guard(buffers_lock);
    Buffers& b = buffers();
    b.params.upload(params, static_cast<std::size_t>(n_models) * arch.n_params);
    b.x.upload(x, static_cast<std::size_t>(n_rows) * arch.n_in());
    b.out.reserve(static_cast<std::size_t>(n_models) * n_rows * C);
    const int chunk = chunk_rows(arch, n_models, n_rows);
    reserve_hidden(b, arch, n_models, chunk);
    for (std::int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
        const int rows = static_cast<int>(std::min<std::int64_t>(chunk, n_rows - r0));
        forward_chunk(arch, b.params.get(), b.x.get(), n_models, r0, rows, b.hidden, b.out.get() + r0 * C, n_rows * C,
                      log ? OutputMode::log_proba : OutputMode::proba);
    }
    b.out.download(out, static_cast<std::size_t>(n_models) * n_rows * C);
}

void evaluate(const std::vector<int>& dims, const float* params, int n_models, const float* x, std::int64_t n_rows,
              const std::int64_t* y, double* loss, double* accuracy) {
    const Arch arch(dims);
    const int C = arch.n_out();
    if (n_models == 0) return;
    std::lock_guard<std::mutex> guard(buffers_lock);
    Buffers& b = buffers();
    b.params.upload(params, static_cast<std::size_t>(n_models) * arch.n_params);
    b.x.upload(x, static_cast<std::size_t>(n_rows) * arch.n_in());
    std::vector<int> labels(y, y + n_rows);
    b.y.upload(labels.data(), labels.size());
    b.loss.reserve(n_models);
    b.correct.reserve(n_models);
    DeviceArray<double>& loss_d = b.loss;
    DeviceArray<double>& correct_d = b.correct;
    SEGFAST_CUDA(cudaMemset(loss_d.get(), 0, n_models * sizeof(double)));
    SEGFAST_CUDA(cudaMemset(correct_d.get(), 0, n_models * sizeof(double)));
    const int chunk = chunk_rows(arch, n_models, std::max<std::int64_t>(n_rows, 1));
    reserve_hidden(b, arch, n_models, chunk);
    b.out.reserve(static_cast<std::size_t>(n_models) * chunk * C);
    for (std::int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
        const int rows = static_cast<int>(std::min<std::int64_t>(chunk, n_rows - r0));
        forward_chunk(arch, b.params.get(), b.x.get(), n_models, r0, rows, b.hidden, b.out.get(),
                      static_cast<long long>(rows) * C, OutputMode::logits);
        score_kernel<<<n_models, 256>>>(rows, C, b.out.get(), static_cast<long long>(rows) * C, b.y.get() + r0,
                                        loss_d.get(), correct_d.get());
        SEGFAST_CUDA_LAUNCHED("score_kernel");
    }
    loss_d.download(loss, n_models);
    correct_d.download(accuracy, n_models);
    for (int m = 0; m < n_models; ++m) {
        loss[m] /= static_cast<double>(n_rows);
        accuracy[m] /= static_cast<double>(n_rows);
    }
}

}  // namespace segfast::cuda
