// Every model of a stack on the same rows, tiled over (model, block of rows) so memory stays
// at one block of activations per thread however many models and rows there are.
#pragma once
#include <cstdint>

#include "arch.h"

namespace segfast {

// probs: (n_models, n_rows, classes) softmax outputs.
void predict_proba(const Arch& arch, const float* params, int n_models, const float* x,
                   std::int64_t n_rows, float* probs, int n_threads);

// loss: (n_models,) mean cross-entropy; accuracy: (n_models,) share of rows whose argmax is y.
void evaluate(const Arch& arch, const float* params, int n_models, const float* x,
              const std::int64_t* y, std::int64_t n_rows, double* loss, double* accuracy, int n_threads);

}  // namespace segfast
