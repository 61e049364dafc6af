// Every model of a stack on the same rows, tiled over (model, block of rows) so memory stays
// at one block of activations per thread however many models and rows there are.
#pragma once
#include <cstdint>

#include "arch.h"

namespace segfast {

// probs: (n_models, n_rows, classes) softmax outputs.
void predict_proba(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                   float* probs, int n_threads);

// loss: (n_models,) mean cross-entropy; accuracy: (n_models,) share of rows whose argmax is y.
void evaluate(const Arch& arch, const float* params, int n_models, const float* x, const std::int64_t* y,
              std::int64_t n_rows, double* loss, double* accuracy, int n_threads);

// Per model and hidden unit, the mean and standard deviation over the rows of x of the unit's
// pre-activation (before ReLU): what REPAIR-style renormalisation matches after a merge.
// mean, stddev: (n_models, hidden units of all hidden layers, in layer order).
void preactivation_stats(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                         double* mean, double* stddev, int n_threads);

}  // namespace segfast
