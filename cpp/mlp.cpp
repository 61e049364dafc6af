// Forward/backward of one model. Shapes in the comments use B for the rows of the block.
#include "mlp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "softmax.h"

namespace segfast {

Workspace::Workspace(const Arch& arch, int rows) : max_rows(rows) {
    const std::size_t widest = static_cast<std::size_t>(arch.widest());
    input.resize(static_cast<std::size_t>(rows) * arch.n_in());
    act.resize(arch.dims.size());
    for (std::size_t l = 1; l < arch.dims.size(); ++l) act[l].resize(static_cast<std::size_t>(rows) * arch.dims[l]);
    grad.resize(rows * widest);
    grad_next.resize(rows * widest);
    grad_t.resize(rows * widest);
    back_t.resize(rows * widest);
    bias_grad.resize(widest);
    labels.resize(rows);
    targets.resize(static_cast<std::size_t>(rows) * arch.n_out());
}

void pack_weights(const Arch& arch, const float* params, float* packed) {
    for (int l = 0; l < arch.n_layers(); ++l) {
        const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
        const float* src = params + arch.w_off[l];
        float* dst = packed + arch.w_off[l];
        for (int s0 = 0; s0 < d_out; s0 += kGemmStrip) {
            const int width = std::min(kGemmStrip, d_out - s0);
            for (int p = 0; p < d_in; ++p) {
                const float* row = src + static_cast<std::size_t>(p) * d_out + s0;
                std::copy(row, row + width,
                          dst + static_cast<std::size_t>(s0) * d_in + static_cast<std::size_t>(p) * width);
            }
        }
    }
}

float* forward(const Arch& arch, const float* params, const float* x, int rows, Workspace& ws, const float* packed) {
    const int L = arch.n_layers();
    const float* in = x;
    for (int l = 0; l < L; ++l) {
        const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
        const int strip = packed ? kGemmStrip : d_out;  // unpacked: one product over all columns
        for (int s0 = 0; s0 < d_out; s0 += strip) {     // (B, d_in) @ (d_in, width) per strip
            const int width = std::min(strip, d_out - s0);
            const float* w = packed ? packed + arch.w_off[l] + static_cast<std::size_t>(s0) * d_in
                                    : params + arch.w_off[l] + s0;
            GemmArgs g = gemm_args(rows, width, d_in, rows_of(in, d_in), w, packed ? width : d_out,
                                   ws.act[l + 1].data() + s0, d_out);
            g.bias = params + arch.b_off[l] + s0;
            gemm(l + 1 < L ? Epilogue::BiasRelu : Epilogue::Bias, g);
        }
        in = ws.act[l + 1].data();
    }
    return ws.act[L].data();
}

void softmax_rows(float* z, int rows, int classes) {
    for (int i = 0; i < rows; ++i) {
        float* row = z + static_cast<std::ptrdiff_t>(i) * classes;
        const float total = sum_shifted_exp(row, classes, max_logit(row, classes), row);
        const float inv = 1.f / total;
        for (int c = 0; c < classes; ++c) row[c] *= inv;
    }
}

void cross_entropy(const float* z, const std::int64_t* y, int rows, int classes, double* loss_sum,
                   std::int64_t* n_correct) {
    double loss = 0.0;
    std::int64_t correct = 0;
    for (int i = 0; i < rows; ++i) {
        const float* row = z + static_cast<std::ptrdiff_t>(i) * classes;
        const int best = argmax_logit(row, classes);
        const float total = sum_shifted_exp(row, classes, row[best]);
        loss += static_cast<double>(std::log(total) + row[best] - row[y[i]]);
        correct += (best == y[i]);
    }
    *loss_sum += loss;
    *n_correct += correct;
}

namespace {

// Softmax cross-entropy of logits z (B, C): returns the summed loss and writes
// dLoss/dz = (softmax(z) - onehot(y)) / B into grad (B, C).
double softmax_xent_grad(const float* z, const std::int64_t* y, int rows, int classes, float* grad) {
    double loss = 0.0;
    const float inv_rows = 1.f / static_cast<float>(rows);
    for (int i = 0; i < rows; ++i) {
        const float* zr = z + static_cast<std::ptrdiff_t>(i) * classes;
        float* gr = grad + static_cast<std::ptrdiff_t>(i) * classes;
        const float top = max_logit(zr, classes);
        const float total = sum_shifted_exp(zr, classes, top, gr);
        loss += static_cast<double>(std::log(total) + top - zr[y[i]]);
        const float scale = inv_rows / total;
        for (int c = 0; c < classes; ++c) gr[c] *= scale;
        gr[y[i]] -= inv_rows;
    }
    return loss;
}

// d/dr of one output's regression loss, r = z - t (before the mean over outputs and rows).
float loss_slope(float r, const LossSpec& loss) {
    if (loss.kind == Loss::Mse) return 2.f * r;
    return r > loss.delta ? loss.delta : (r < -loss.delta ? -loss.delta : r);
}

float loss_value(float r, const LossSpec& loss) {
    if (loss.kind == Loss::Mse) return r * r;
    const float a = std::fabs(r);
    return a <= loss.delta ? 0.5f * r * r : loss.delta * (a - 0.5f * loss.delta);
}

void sgd_vector(float* w, float* velocity, const float* anchor, const float* grad, int n, const SgdStep& s) {
    for (int j = 0; j < n; ++j) {
        float step = grad[j] + s.weight_decay * w[j];
        if (anchor) step += s.prox * (w[j] - anchor[j]);
        if (velocity) {
            velocity[j] = s.momentum * velocity[j] + step;
            step = velocity[j];
        }
        w[j] -= s.lr * step;
    }
}

}  // namespace

double regression_loss(const float* z, const float* t, int rows, int k, const LossSpec& loss, float* grad) {
    double total = 0.0;
    const float inv_k = 1.f / static_cast<float>(k);
    const float scale = inv_k / static_cast<float>(rows);
    for (int i = 0; i < rows; ++i) {
        double row_loss = 0.0;
        for (int c = 0; c < k; ++c) {
            const std::ptrdiff_t at = static_cast<std::ptrdiff_t>(i) * k + c;
            const float r = z[at] - t[at];
            row_loss += static_cast<double>(loss_value(r, loss));
            if (grad) grad[at] = scale * loss_slope(r, loss);
        }
        total += row_loss * static_cast<double>(inv_k);
    }
    return total;
}

namespace {

// The backward pass from dLoss/dz in ws.grad, `rows` rows: each layer's weight gradient either
// applied at once as an SGD step fused into its product (grad_out null: sgd_step) or added into
// grad_out (add_gradient, which never writes params). The gradient handed to the layer below is
// computed before the layer's update, from the weights as they were.
void backward(const Arch& arch, float* params, int rows, Workspace& ws, float* grad_out, float* velocity,
              const float* anchor, const SgdStep& sgd) {
    float* grad = ws.grad.data();
    float* grad_next = ws.grad_next.data();
    for (int l = arch.n_layers() - 1; l >= 0; --l) {
        const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
        float* W = params + arch.w_off[l];                              // (d_in, d_out)
        float* b = params + arch.b_off[l];                              // (d_out,)
        const float* in = l == 0 ? ws.input.data() : ws.act[l].data();  // (B, d_in)

        if (l > 0) {
            // grad_next (B, d_in) = (grad (B, d_out) @ W^T) * relu'(in), computed as
            // W (d_in, d_out) @ grad^T (d_out, B) so the kernel streams W row by row:
            // only activation-sized matrices get transposed, never the weights.
            transpose(grad, d_out, rows, d_out, ws.grad_t.data(), rows);  // (d_out, B)
            gemm(Epilogue::Store,
                 gemm_args(d_in, rows, d_out, rows_of(W, d_out), ws.grad_t.data(), rows, ws.back_t.data(), rows));
            // back to (B, d_in) by the blocked transpose, then the ReLU mask in one contiguous
            // pass: a strided read of back_t per element was the step's costliest loop for
            // narrow models (values only move: the same bits)
            transpose(ws.back_t.data(), rows, d_in, rows, grad_next, d_in);
            const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(rows) * d_in;
            for (std::ptrdiff_t ij = 0; ij < n; ++ij) grad_next[ij] = in[ij] > 0.f ? grad_next[ij] : 0.f;
        }

        float* bg = ws.bias_grad.data();
        for (int j = 0; j < d_out; ++j) bg[j] = 0.f;
        for (int i = 0; i < rows; ++i) {
            const float* gr = grad + static_cast<std::ptrdiff_t>(i) * d_out;
            for (int j = 0; j < d_out; ++j) bg[j] += gr[j];
        }
        if (grad_out) {  // dW (d_in, d_out) += in^T (d_in, B) @ grad (B, d_out)
            gemm(Epilogue::Add,
                 gemm_args(d_in, d_out, rows, columns_of(in, d_in), grad, d_out, grad_out + arch.w_off[l], d_out));
            for (int j = 0; j < d_out; ++j) grad_out[arch.b_off[l] + j] += bg[j];
        } else {  // W (d_in, d_out) -= lr * (in^T (d_in, B) @ grad (B, d_out) + ...), fused.
            GemmArgs g = gemm_args(d_in, d_out, rows, columns_of(in, d_in), grad, d_out, W, d_out);
            g.velocity = velocity ? velocity + arch.w_off[l] : nullptr;
            g.anchor = anchor ? anchor + arch.w_off[l] : nullptr;
            g.sgd = sgd;
            gemm(Epilogue::Sgd, g);
            sgd_vector(b, velocity ? velocity + arch.b_off[l] : nullptr, anchor ? anchor + arch.b_off[l] : nullptr, bg,
                       d_out, sgd);
        }
        std::swap(grad, grad_next);
    }
}

// The loss of the block's outputs (summed over rows) and dLoss/dz of its mean into ws.grad.
double output_loss(const Arch& arch, const float* out, int rows, Workspace& ws, const LossSpec& loss_spec) {
    return loss_spec.kind == Loss::CrossEntropy
               ? softmax_xent_grad(out, ws.labels.data(), rows, arch.n_out(), ws.grad.data())
               : regression_loss(out, ws.targets.data(), rows, arch.n_out(), loss_spec, ws.grad.data());
}

}  // namespace

double sgd_step(const Arch& arch, float* params, float* velocity, const float* anchor, int rows, const SgdStep& sgd,
                Workspace& ws, const LossSpec& loss_spec) {
    const float* out = forward(arch, params, ws.input.data(), rows, ws);
    const double loss = output_loss(arch, out, rows, ws, loss_spec);
    if (!std::isfinite(loss)) return loss;
    backward(arch, params, rows, ws, nullptr, velocity, anchor, sgd);
    return loss;
}

double add_gradient(const Arch& arch, const float* params, int rows, float scale, Workspace& ws, float* grad,
                    const LossSpec& loss_spec) {
    const float* out = forward(arch, params, ws.input.data(), rows, ws);
    const double loss = output_loss(arch, out, rows, ws, loss_spec);
    if (!std::isfinite(loss)) return loss;
    float* dz = ws.grad.data();
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(rows) * arch.n_out(); ++i) dz[i] *= scale;
    backward(arch, const_cast<float*>(params), rows, ws, grad, nullptr, nullptr, SgdStep{});  // reads params only
    return loss;
}

}  // namespace segfast
