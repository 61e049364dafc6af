// The gradient of one model's mean loss over many rows, for fitting a few numbers through a
// network (learned merge coefficients), where training's fused update has nothing to update.
#pragma once
#include <cstdint>

#include "arch.h"
#include "mlp.h"

namespace segfast {

// Mean loss of the model `params` over the n_rows rows of x, against labels (classification)
// or targets (n_rows, k) (regression), and its gradient (n_params,) into grad. The rows go in
// blocks to a fixed number of partial sums added in order: the same bits for any thread count.
double loss_gradient(const Arch& arch, const float* params, const float* x, const std::int64_t* labels,
                     const float* targets, std::int64_t n_rows, const LossSpec& loss, double* grad, int n_threads);

}  // namespace segfast
