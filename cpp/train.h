// One epoch of minibatch SGD for every model of a stack, each on its own segment.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "arch.h"
#include "gemm.h"
#include "mlp.h"

namespace segfast {

struct EpochConfig {
    int batch_size = 32;
    SgdStep sgd;
    std::uint64_t seed = 0;
    int flip_width = 0;  // > 0: flip each row, seen as an image of this width, left-right at random
    // Global index of model 0 here: keys the random streams, so a block of a larger stack trained
    // on its own (one block per worker) draws exactly the minibatches it would draw in the whole.
    std::int64_t first_model = 0;
    int n_threads = 1;
    LossSpec loss;  // cross-entropy against EpochInputs::y, or a regression loss against ::targets
};

struct EpochInputs {
    const float* x = nullptr;               // (n_rows, d0)
    const std::int64_t* y = nullptr;        // (n_rows,) labels in [0, classes)
    const std::int64_t* order = nullptr;    // row indices; segment i is order[offsets[i]:offsets[i+1]]
    const std::int64_t* offsets = nullptr;  // (n_models + 1,)
    const std::uint8_t* active = nullptr;   // (n_models,) 0 = skip this model this epoch
    const std::int64_t* epoch = nullptr;    // (n_models,) the model's epoch number: keys its random stream
    const float* start_row = nullptr;       // (n_params,) or null: every active model starts from it
    const float* targets = nullptr;         // (n_rows, k) regression targets, with a regression loss
};

struct EpochResult {
    double* mean_loss = nullptr;       // (n_models,) mean training loss over the epoch (NaN if skipped)
    std::uint8_t* diverged = nullptr;  // (n_models,) 1 if a loss became NaN or inf
    // The merge of a round fused into its last epoch: when merge_weights (n_models,) is given,
    // sum_m merge_weights[m] * params[m] over the models that trained and did not diverge, in
    // float64, each model added while its row is still in its thread's cache. The sum goes in
    // pieces (merge_pieces), each from 0.0 in model order, and merged = 0.0 + the pieces in order.
    const double* merge_weights = nullptr;
    std::int64_t merge_block = 0;  // models per merge block; 0: ceil(n_models / kMergeBlocks)
    std::int64_t merge_first = 0;  // position of model 0 in a larger call (blocks align on it)
    double* merged = nullptr;      // (n_params,) or null
    double* pieces = nullptr;      // (merge_pieces(...).size(), n_params) or null
};

// A fused merge left to pick its block (merge_block 0) adds a stack's models in at most this many
// blocks: few enough partial sums to hold, enough blocks to keep every thread busy. Python reads it
// as _core.MERGE_BLOCK, to split a stack across workers the way one call would.
constexpr int kMergeBlocks = 64;

// How a fused merge splits: [begin, end) model ranges. Blocks of `block` models at positions
// first + m, so that several calls covering consecutive positions (a stack trained in parts,
// one per worker) give between them the pieces of one call over all the positions: a block a
// previous part began comes model by model, so the caller can add them on in order, exactly.
std::vector<std::pair<long, long>> merge_pieces(int n_models, std::int64_t block, std::int64_t first);

// params: (n_models, arch.n_params); velocity: same shape, or nullptr without momentum;
// anchor: same shape, the rows the proximal term (cfg.sgd.prox) pulls toward, or nullptr.
void train_epoch(const Arch& arch, float* params, float* velocity, const float* anchor, int n_models,
                 const EpochInputs& in, const EpochConfig& cfg, const EpochResult& out);

}  // namespace segfast
