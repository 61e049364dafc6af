// A whole epoch in one launch, for MLPs with one hidden layer (d0 -> H -> C), with each
// model's weights held on chip from the epoch's first step to its last.
//
// Why: the per-layer path (trainer.cu's step loop) launches about seven kernels a step and
// reads every weight from device memory twice a step (the forward product, then the update).
// Here a thread-block cluster of c CTAs trains one model: CTA q holds hidden units
// [q*U, (q+1)*U) of the first layer (its (d0+1, U) column block, bias row included, and the
// matching U rows of the second layer) in shared memory, so the weights cross device memory
// once in and once out per epoch, whatever the number of steps. The CTAs exchange only the
// partial logits of each minibatch (rows x C floats) through distributed shared memory; each
// sums them in rank order, so every CTA of a model sees bit-identical logits and takes the
// same decisions (divergence included). Results are deterministic run to run.
//
// Not for: deeper MLPs, minibatches over 32 rows, or blocks that do not fit in shared memory
// (plan_resident says so, and the caller falls back to the per-layer path), GPUs before
// Hopper (clusters).
#pragma once
#include <cstddef>
#include <string>

#include "../arch.h"

namespace segfast::cuda {

constexpr int kResidentThreads = 256;

struct ResidentEpoch {
    int n_models = 0, d0 = 0, hidden = 0, classes = 0, batch_size = 0, flip_width = 0;
    long long P = 0, w_off0 = 0, w_off1 = 0;  // row length; where W0 (d0+1, H) and W1 (H+1, C) start
    const float* x = nullptr;                 // (n_rows, d0) on the device
    const int* y = nullptr;                   // (n_rows,)
    const int* shuffled = nullptr;            // each model's rows in this epoch's order
    const unsigned char* flips = nullptr;     // per shuffled row, when flip_width > 0
    const int* offsets = nullptr;             // (n_models + 1,)
    const unsigned char* active = nullptr;    // (n_models,)
    const float* w_in = nullptr;              // epoch start, model stride w_in_stride (0: one broadcast row)
    long long w_in_stride = 0;
    const float* v_in = nullptr;    // velocity at the start (model stride P), or null for zero
    float* w_out = nullptr;         // (n_models, P) after the epoch
    float* v_out = nullptr;         // (n_models, P), or null without momentum
    const float* anchor = nullptr;  // the proximal term's anchor, or null
    long long anchor_stride = 0;
    float lr = 0.f, momentum = 0.f, weight_decay = 0.f, prox = 0.f;
    int* diverged_step = nullptr;  // (n_models,) -1, or the step whose loss was not finite
    int* non_finite = nullptr;     // (n_models,) set to 1 when a written weight is not finite
    double* loss_sum = nullptr;    // (n_models,) the epoch's summed row losses
};

struct ResidentPlan {
    bool ok = false;
    int cluster = 0;      // CTAs per model
    int units = 0;        // hidden units per CTA (the last CTA may hold fewer)
    int rows = 0;         // minibatch rows the kernel is compiled for: 8, 16 or 32
    int unit_blocks = 0;  // units padded to 16 * unit_blocks
    std::size_t smem = 0;
    int active_clusters = 0;  // clusters the device runs at once
    std::string considered;   // each cluster size tried: "c:clusters at once" or why not, for reports
};

// The cheapest cluster size that fits, or ok = false where the kernel cannot serve this epoch
// or is measured to lose to the per-layer path (then that path runs). max_rows: the widest
// minibatch of the epoch; one_step: no model takes a second step this epoch.
// SEGFAST_CUDA_KERNELS=resident takes the kernel wherever it can run (tests).
ResidentPlan plan_resident(const Arch& arch, int n_active, int max_rows, bool momentum, bool one_step);
void launch_resident(const ResidentPlan& plan, const ResidentEpoch& epoch);

}  // namespace segfast::cuda
