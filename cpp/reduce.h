// Reductions over the model axis of a stack (N, P) into one parameter row (P,): the merge
// step itself. Work is split over column chunks, each reduced in model order, so results do
// not depend on the thread count.
#pragma once
#include <cstddef>

namespace segfast {

// out[j] = sum_i weights[i] * params[i, j]
void weighted_sum(const float* params, int n_models, std::size_t n_params, const double* weights, float* out,
                  int n_threads);

// Coordinate-wise median (mean of the two middle values for even N).
void coordinate_median(const float* params, int n_models, std::size_t n_params, float* out, int n_threads);

// Coordinate-wise trimmed mean: drop the `trim` smallest and `trim` largest values of each
// coordinate, average the rest (requires 2 * trim < n_models).
void trimmed_mean(const float* params, int n_models, std::size_t n_params, int trim, float* out, int n_threads);

// DP-FedAvg's sum: each model's update params[i] - global scaled to L2 norm at most `clip`
// (by min(1, clip / norm); a non-finite update counts as 0) and the scaled updates summed into
// out (n_params,); norms (n_models,)
// gets each update's norm before clipping. Each norm is one pass over its row; the sum goes in
// model order per column: the same bits for any thread count.
void clipped_update_sum(const float* params, int n_models, std::size_t n_params, const float* global, double clip,
                        double* out, double* norms, int n_threads);

}  // namespace segfast
