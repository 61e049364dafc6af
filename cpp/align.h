// Weight matching: permute a model's hidden units so that its weights line up with a target's.
// Hidden units of independently trained models play the same roles in different orders;
// averaging them unaligned mixes unrelated units (the design notes' "averaging ten models
// collapses"). A permutation of hidden units never changes the function a model computes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "arch.h"
#include "assign.h"
#include "buffer.h"

namespace segfast {

// A model's hidden units, hidden layer after hidden layer: layer l's (d, d_in + 1 + d_out) block,
// whose row i holds unit i's incoming weights, bias and outgoing weights. It is what the
// similarity products read (a row at a time) and what a move of units permutes: whole rows,
// and a few entries of each row of the blocks on either side. A weight matrix between two
// hidden layers is held twice, as the outgoing weights of the layer below and the incoming
// weights of the layer above; moves keep the two copies equal. (In a parameter row a unit is
// a column of W_l: a move touched every row of it, and the products read it transposed.)
std::size_t units_size(const Arch& arch);
void units_of(const Arch& arch, const float* row, float* units, int n_threads);
void row_of(const Arch& arch, const float* units, float* row, int n_threads);

// Work for the other threads while one thread solves an assignment (which is sequential):
// task(t, thread) for t in [0, count), run once, beside the first assignment of an align_to call.
struct Beside {
    long count = 0;
    std::function<void(long, int)> task;
};

struct AlignWorkspace {
    Buffer<float> model_strips;         // the model's units transposed, (d_in + 1 + d_out, 64) per strip of units
    bool strips_ready = false;          // model_strips already holds this call's model's first hidden layer
    std::vector<Buffer<float>> scores;  // (d, d) per hidden layer
    std::vector<char> valid;            // per hidden layer: its score is up to date
    Buffer<float> gathered, change;     // operands of a score's low-rank correction
    Buffer<float> scratch;              // the moved units' rows, or the entries moved in a neighbour's rows
    std::vector<int> q, composed, moved;
    std::vector<double> prices, moved_prices;  // prices: a call's own when none are given
    std::vector<char> dirty;                   // per hidden layer: a neighbour moved since its last assignment
    std::vector<std::vector<int>> touched;     // per hidden layer: the positions whose units moved in the last call
    std::vector<std::vector<char>> is_touched;
    AssignWorkspace lap;
};

// Total hidden units (the length of one model's permutation record).
int hidden_units(const Arch& arch);

// Permutes `units` (one model's, see units_size) in place to match `target` (units too) by coordinate
// descent over the hidden layers, each step a linear assignment on unit similarities
// (incoming weights, bias, outgoing weights). perm (hidden_units) is updated so that
// perm[off_l + i] is the original index of the unit now at position i of hidden layer l.
// Returns true when any unit moved.
// n_threads splits the products, gathers and permutations and runs `beside` (the assignment
// itself is sequential).
// start: how each layer's first assignment starts (see Start); later ones in the same call
// start from the layer's own prices. prices (hidden_units), optional: each layer's column
// prices, kept between calls for the same model. row_duals (hidden_units), optional: read by
// Start::RowDuals, and left holding this call's row duals for the next, similar, match.
// sum (units_size), optional: a running sum of models' units that includes this model's, kept
// equal to it as its units move (the "mean of the others" of align_stack, without a pass over
// the whole model).
// beside, optional: work run on the other threads during the first assignment (a model with
// a hidden layer always has one); its count is left 0, the work done.
// ws.touched is left holding, per hidden layer, every position a move wrote in this call
// (a unit moved away and back included).
bool align_to(const Arch& arch, const float* target, float* units, int* perm, int max_sweeps, AlignWorkspace& ws,
              int n_threads = 1, Start start = Start::Cold, double* prices = nullptr, double* row_duals = nullptr,
              double* sum = nullptr, Beside* beside = nullptr);

// Aligns a whole stack in place (the "merge many" scheme): every model to models[reference]
// (the first, then the rest in parallel from its row duals: where an optimum is not unique,
// as with all-zero units, the start decides which one), then, round by round, each other model
// in turn to the mean of the rest (the reference stays put as the anchor), until no assignment
// changes or max_rounds. Taking the models in turn (Gauss-Seidel) makes every accepted move
// raise the sum of pairwise similarities, so the rounds converge; matching all models to one
// snapshot of the mean at once (Jacobi) was measured to cycle, about half the units moving every
// round forever.
// The models are aligned as units (see units_size) and written back as parameter rows.
// perms: (n_models, hidden_units). Returns the number of rounds after the first alignment.
int align_stack(const Arch& arch, float* params, int n_models, int reference, int max_rounds, int* perms,
                int n_threads);

}  // namespace segfast
