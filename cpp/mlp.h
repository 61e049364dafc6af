// Forward and backward of ONE model on one block of rows: the work each thread does for the
// model it holds. No threading and no validation here (the caller owns both).
#pragma once
#include <cstdint>
#include <vector>

#include "arch.h"
#include "buffer.h"
#include "gemm.h"

namespace segfast {

// Per-thread scratch, sized once for an architecture and a largest row count.
struct Workspace {
    int max_rows = 0;
    Buffer<float> input;               // (max_rows, d0) gathered minibatch
    std::vector<Buffer<float>> act;    // act[l]: (max_rows, d_l) for l = 1..L (act[0] unused)
    Buffer<float> grad, grad_next;     // (max_rows, widest) dLoss/d(pre-activation)
    Buffer<float> grad_t, back_t;      // (widest, max_rows) transposed copies for the backward product
    Buffer<float> bias_grad;           // (widest,)
    Buffer<float> snapshot;            // (2 * n_params,) a model's parameters and velocity at epoch start
    std::vector<std::int64_t> rows;    // the segment's row indices, shuffled each epoch
    std::vector<std::int64_t> labels;  // (max_rows,) labels of the minibatch

    Workspace(const Arch& arch, int max_rows);
};

// Each W_l (d_in, d_out) of the parameter row `params` in strips of kGemmStrip output columns
// (gemm.h): columns [s0, s0 + width) as a (d_in, width) row-major block at
// packed + w_off[l] + s0 * d_in, so a tile streams one run instead of a few floats every d_out.
// Worth it when one model runs on many row blocks, as in an ensemble's vote (bench/README.md).
void pack_weights(const Arch& arch, const float* params, float* packed);

// Logits of `rows` rows of x (row stride arch.n_in()) into ws.act[L]; returns that pointer.
// With packed (pack_weights of params) the products read the weights from there, biases still
// from params: the same products per element, so the same logits to the bit.
float* forward(const Arch& arch, const float* params, const float* x, int rows, Workspace& ws,
               const float* packed = nullptr);

// In-place softmax of each row of z (rows, classes).
void softmax_rows(float* z, int rows, int classes);

// Sum over rows of the cross-entropy of logits z (rows, classes) against labels y, and
// the number of rows whose argmax (first maximum) equals the label.
void cross_entropy(const float* z, const std::int64_t* y, int rows, int classes, double* loss_sum,
                   std::int64_t* n_correct);

// One SGD step of one model on the minibatch in ws.input / ws.labels (`rows` rows):
// forward, softmax cross-entropy (mean over rows), backward, and the update of every layer
// fused into its gradient product. velocity is the model's momentum row or nullptr; anchor
// the row the proximal term pulls toward (with sgd.prox > 0) or nullptr.
// Returns the summed loss of the rows; if it is not finite the parameters are left untouched.
double sgd_step(const Arch& arch, float* params, float* velocity, const float* anchor, int rows, const SgdStep& sgd,
                Workspace& ws);

}  // namespace segfast
