// Forward and backward of ONE model on one block of rows: the work each thread does for the
// model it holds. No threading and no validation here (the caller owns both).
#pragma once
#include <cstdint>
#include <vector>

#include "arch.h"
#include "buffer.h"
#include "gemm.h"

namespace segfast {

// The training loss on the output layer z (rows, k): softmax cross-entropy against class labels,
// or, for regression, the mean squared error or the Huber loss against k float targets a row,
// each averaged over the k outputs (as torch's MSELoss and HuberLoss average over elements).
enum class Loss { CrossEntropy, Mse, Huber };

struct LossSpec {
    Loss kind = Loss::CrossEntropy;
    float delta = 1.f;  // Huber: quadratic for |z - t| <= delta, linear beyond
};

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
    Buffer<float> targets;             // (max_rows, k) regression targets of the minibatch

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

// Sum over rows of the regression loss of outputs z (rows, k) against targets t (rows, k), and
// with grad given, dLoss/dz of the mean over rows written into it: (rows, k).
double regression_loss(const float* z, const float* t, int rows, int k, const LossSpec& loss, float* grad = nullptr);

// One SGD step of one model on the minibatch in ws.input and ws.labels (or ws.targets for a
// regression loss), `rows` rows: forward, the loss (mean over rows), backward, and the update of
// every layer fused into its gradient product. velocity is the model's momentum row or nullptr;
// anchor the row the proximal term pulls toward (with sgd.prox > 0) or nullptr.
// Returns the summed loss of the rows; if it is not finite the parameters are left untouched.
double sgd_step(const Arch& arch, float* params, float* velocity, const float* anchor, int rows, const SgdStep& sgd,
                Workspace& ws, const LossSpec& loss = {});

// The gradient of one model's loss on the minibatch in ws.input and ws.labels (or ws.targets),
// `rows` rows, added into grad (n_params,): the gradient of the mean over the rows, times
// `scale` (rows / n gives this block's share of the mean over n rows). params are not changed.
// Returns the summed loss of the rows; if it is not finite nothing is added.
double add_gradient(const Arch& arch, const float* params, int rows, float scale, Workspace& ws, float* grad,
                    const LossSpec& loss = {});

}  // namespace segfast
