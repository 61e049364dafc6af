// Every model of a stack on the same rows, tiled over (model, block of rows) so memory stays
// at one block of activations per thread however many models and rows there are.
#pragma once
#include <cstdint>

#include "arch.h"

namespace segfast {

// out: (n_models, n_rows, outputs): the last layer's values, through a softmax when `softmax`
// (class probabilities) or as they are (a regression stack's predictions).
void predict_outputs(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                     float* out, bool softmax, int n_threads);

// sq_err, abs_err: (n_models, k) sums over the rows of (z - t)^2 and |z - t| per output, for
// targets t (n_rows, k): what a regression stack's MSE, MAE and R^2 are made of.
void regression_errors(const Arch& arch, const float* params, int n_models, const float* x, const float* t,
                       std::int64_t n_rows, double* sq_err, double* abs_err, int n_threads);

// loss: (n_models,) mean cross-entropy; accuracy: (n_models,) share of rows whose argmax is y.
void evaluate(const Arch& arch, const float* params, int n_models, const float* x, const std::int64_t* y,
              std::int64_t n_rows, double* loss, double* accuracy, int n_threads);

// Per model and hidden unit, the mean and standard deviation over the rows of x of the unit's
// pre-activation (before ReLU): what REPAIR-style renormalisation matches after a merge.
// mean, stddev: (n_models, hidden units of all hidden layers, in layer order).
void preactivation_stats(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                         double* mean, double* stddev, int n_threads);

}  // namespace segfast
