// Combining the predictions of every model of a stack on the same rows, without ever holding
// the (models, rows, classes) tensor of all rows: rows go in spans of a few thousand; in each,
// every model runs on the span's rows (one task a model), then each row sums its models in order.
#pragma once
#include <cstdint>

#include "arch.h"

namespace segfast {

enum class Combine {
    Proba,     // sum_i w * softmax(f_i(x))
    Votes,     // sum_i w * onehot(argmax f_i(x))  (first maximum on ties)
    LogProba,  // sum_i w * log softmax(f_i(x))
};

// Each model's own score on labelled rows, from the forward pass that combines them: the same
// numbers as evaluate() (cross-entropy and accuracy, summed in the same 256-row blocks and order).
struct ModelScores {
    const std::int64_t* labels;  // (n_rows,) in [0, classes)
    double* loss;                // (n_models,) mean cross-entropy
    double* accuracy;            // (n_models,)
};

// out: (n_rows, classes). The weight of model i on row r is model_weights[i] (when given) times
// row_weights[r * n_models + i] (when given); missing factors count as 1. votes, when given,
// (n_rows, classes) also receives the weighted votes from the same forward pass; scores, when
// given (only without weights: every model must see every row), each model's own score.
// running_sum, when given, (n_rows, classes) float64: each row's sum starts from it and ends in
// it, so a stack scored part by part (a cluster's blocks, in model order) sums as one call does.
void combine(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows, Combine mode,
             const double* model_weights, const float* row_weights, float* out, int n_threads, float* votes = nullptr,
             const ModelScores* scores = nullptr, double* running_sum = nullptr);

}  // namespace segfast
