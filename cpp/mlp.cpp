// Forward/backward of one model. Shapes in the comments use B for the rows of the block.
#include "mlp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace segfast {

Workspace::Workspace(const Arch& arch, int rows) : max_rows(rows) {
    const std::size_t widest = static_cast<std::size_t>(arch.widest());
    input.resize(static_cast<std::size_t>(rows) * arch.n_in());
    act.resize(arch.dims.size());
    for (std::size_t l = 1; l < arch.dims.size(); ++l)
        act[l].resize(static_cast<std::size_t>(rows) * arch.dims[l]);
    grad.resize(rows * widest);
    grad_next.resize(rows * widest);
    grad_t.resize(rows * widest);
    back_t.resize(rows * widest);
    bias_grad.resize(widest);
    labels.resize(rows);
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
                std::copy(row, row + width, dst + static_cast<std::size_t>(s0) * d_in + static_cast<std::size_t>(p) * width);
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
        GemmArgs g;
        g.m = rows;  // (B, d_in) @ (d_in, width) per strip
        g.k = d_in;
        g.a = in;
        g.a_rs = d_in;
        g.a_ks = 1;
        g.ldc = d_out;
        for (int s0 = 0; s0 < d_out; s0 += strip) {
            g.n = std::min(strip, d_out - s0);
            g.b = packed ? packed + arch.w_off[l] + static_cast<std::size_t>(s0) * d_in : params + arch.w_off[l] + s0;
            g.ldb = packed ? g.n : d_out;
            g.c = ws.act[l + 1].data() + s0;
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
        float top = row[0];
        for (int c = 1; c < classes; ++c) top = row[c] > top ? row[c] : top;
        float total = 0.f;
        for (int c = 0; c < classes; ++c) {
            row[c] = std::exp(row[c] - top);
            total += row[c];
        }
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
        int best = 0;
        for (int c = 1; c < classes; ++c) best = row[c] > row[best] ? c : best;
        float total = 0.f;
        for (int c = 0; c < classes; ++c) total += std::exp(row[c] - row[best]);
        loss += static_cast<double>(std::log(total) + row[best] - row[y[i]]);
        correct += (best == y[i]);
    }
    *loss_sum += loss;
    *n_correct += correct;
}

namespace {

// dst (cols, rows) = src (rows, cols) transposed.
void transpose(const float* src, int rows, int cols, float* dst) {
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) dst[static_cast<std::ptrdiff_t>(j) * rows + i] = src[static_cast<std::ptrdiff_t>(i) * cols + j];
}

// Softmax cross-entropy of logits z (B, C): returns the summed loss and writes
// dLoss/dz = (softmax(z) - onehot(y)) / B into grad (B, C).
double softmax_xent_grad(const float* z, const std::int64_t* y, int rows, int classes, float* grad) {
    double loss = 0.0;
    const float inv_rows = 1.f / static_cast<float>(rows);
    for (int i = 0; i < rows; ++i) {
        const float* zr = z + static_cast<std::ptrdiff_t>(i) * classes;
        float* gr = grad + static_cast<std::ptrdiff_t>(i) * classes;
        float top = zr[0];
        for (int c = 1; c < classes; ++c) top = zr[c] > top ? zr[c] : top;
        float total = 0.f;
        for (int c = 0; c < classes; ++c) {
            gr[c] = std::exp(zr[c] - top);
            total += gr[c];
        }
        loss += static_cast<double>(std::log(total) + top - zr[y[i]]);
        const float scale = inv_rows / total;
        for (int c = 0; c < classes; ++c) gr[c] *= scale;
        gr[y[i]] -= inv_rows;
    }
    return loss;
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

double sgd_step(const Arch& arch, float* params, float* velocity, const float* anchor, int rows,
                const SgdStep& sgd, Workspace& ws) {
    const int L = arch.n_layers();
    const float* logits = forward(arch, params, ws.input.data(), rows, ws);
    float* grad = ws.grad.data();
    float* grad_next = ws.grad_next.data();
    const double loss = softmax_xent_grad(logits, ws.labels.data(), rows, arch.n_out(), grad);
    if (!std::isfinite(loss)) return loss;

    for (int l = L - 1; l >= 0; --l) {
        const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
        float* W = params + arch.w_off[l];  // (d_in, d_out)
        float* b = params + arch.b_off[l];  // (d_out,)
        const float* in = l == 0 ? ws.input.data() : ws.act[l].data();  // (B, d_in)

        if (l > 0) {
            // grad_next (B, d_in) = (grad (B, d_out) @ W^T) * relu'(in), computed as
            // W (d_in, d_out) @ grad^T (d_out, B) so the kernel streams W row by row:
            // only activation-sized matrices get transposed, never the weights.
            transpose(grad, rows, d_out, ws.grad_t.data());
            GemmArgs g;
            g.m = d_in;
            g.n = rows;
            g.k = d_out;
            g.a = W;
            g.a_rs = d_out;
            g.a_ks = 1;
            g.b = ws.grad_t.data();
            g.ldb = rows;
            g.c = ws.back_t.data();
            g.ldc = rows;
            gemm(Epilogue::Store, g);
            const float* bt = ws.back_t.data();
            for (int i = 0; i < rows; ++i)
                for (int j = 0; j < d_in; ++j) {
                    const std::ptrdiff_t ij = static_cast<std::ptrdiff_t>(i) * d_in + j;
                    grad_next[ij] = in[ij] > 0.f ? bt[static_cast<std::ptrdiff_t>(j) * rows + i] : 0.f;
                }
        }

        // W (d_in, d_out) -= lr * (in^T (d_in, B) @ grad (B, d_out) + ...), fused.
        GemmArgs g;
        g.m = d_in;
        g.n = d_out;
        g.k = rows;
        g.a = in;
        g.a_rs = 1;
        g.a_ks = d_in;
        g.b = grad;
        g.ldb = d_out;
        g.c = W;
        g.ldc = d_out;
        g.velocity = velocity ? velocity + arch.w_off[l] : nullptr;
        g.anchor = anchor ? anchor + arch.w_off[l] : nullptr;
        g.sgd = sgd;
        gemm(Epilogue::Sgd, g);

        float* bg = ws.bias_grad.data();
        for (int j = 0; j < d_out; ++j) bg[j] = 0.f;
        for (int i = 0; i < rows; ++i) {
            const float* gr = grad + static_cast<std::ptrdiff_t>(i) * d_out;
            for (int j = 0; j < d_out; ++j) bg[j] += gr[j];
        }
        sgd_vector(b, velocity ? velocity + arch.b_off[l] : nullptr, anchor ? anchor + arch.b_off[l] : nullptr, bg,
                   d_out, sgd);
        std::swap(grad, grad_next);
    }
    return loss;
}

}  // namespace segfast
