#include "align.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "gemm.h"
#include "threads.h"

namespace segfast {

namespace {

constexpr int kStrip = kGemmStrip;  // model features travel in strips this wide (the kernel's panel)
constexpr int kRowBlock = 64;       // rows of a score per task when a product is split by rows

int blocks(int n, int size) { return (n + size - 1) / size; }

// body(i0, i1, thread) for rows [0, n) in blocks of kRowBlock, split across threads.
template <class Body>
void for_row_blocks(int n, int n_threads, Body&& body) {
    parallel_for(blocks(n, kRowBlock), n_threads, [&](long block, int thread) {
        const int i0 = static_cast<int>(block) * kRowBlock;
        body(i0, std::min(n, i0 + kRowBlock), thread);
    });
}

// Hidden layer h of a model: its width, the widths around it, where its weights sit in a
// parameter row and where its block sits among the model's units (see units_size).
struct Hidden {
    int d_in, d, d_out;
    std::size_t w, b, w_next;  // offsets of W_h (d_in, d), b_h (d) and W_{h+1} (d, d_out) in a row
    std::size_t at;            // offset of the (d, features) block in the units
    int features() const { return d_in + 1 + d_out; }
    int tail() const { return d_in + 1; }  // where a unit's outgoing weights start in its row
    std::size_t size() const { return static_cast<std::size_t>(d) * features(); }
};

Hidden hidden(const Arch& arch, int h) {
    std::size_t at = 0;
    for (int l = 0; l < h; ++l)
        at += static_cast<std::size_t>(arch.dims[l + 1]) * (arch.dims[l] + 1 + arch.dims[l + 2]);
    return {arch.dims[h], arch.dims[h + 1], arch.dims[h + 2], arch.w_off[h], arch.b_off[h], arch.w_off[h + 1], at};
}

// Rows [i0, i1) of hidden layer h's block taken from a parameter row.
void units_from_row(const Hidden& h, const float* row, int i0, int i1, float* units) {
    const std::size_t F = h.features();
    float* block = units + h.at;
    transpose(row + h.w + i0, h.d, h.d_in, i1 - i0, block + i0 * F, static_cast<std::ptrdiff_t>(F));
    for (int i = i0; i < i1; ++i) {
        float* unit = block + i * F + h.d_in;
        unit[0] = row[h.b + i];
        std::memcpy(unit + 1, row + h.w_next + static_cast<std::size_t>(i) * h.d_out, sizeof(float) * h.d_out);
    }
}

// The mean of the other models, (sum - units) / (n - 1), with sum including units: entries [j0, j1).
void mean_of_others(const double* sum, const float* units, double inv, std::size_t j0, std::size_t j1, float* out) {
    for (std::size_t j = j0; j < j1; ++j) out[j] = static_cast<float>((sum[j] - units[j]) * inv);
}

// The target of align_stack's rounds, model by model: the mean of the other models' units.
// A model's is prepared while the previous model's assignment is solved (prepare, run beside
// it), from the sum as it then stands; that match's moves are then patched in (refresh).
class MeanOfOthers {
   public:
    MeanOfOthers(const Arch& arch, const double* sum, const float* units, int n_models, int n_threads)
        : arch_(arch),
          sum_(sum),
          units_(units),
          size_(units_size(arch)),
          inv_(1.0 / (n_models - 1)),
          n_threads_(n_threads) {
        for (int l = 0; l + 1 < arch.n_layers(); ++l) {
            const Hidden h = hidden(arch, l);
            for (int i = 0; i < h.d; i += kRowBlock) {
                const std::size_t row = h.at + static_cast<std::size_t>(i) * h.features();
                runs_.emplace_back(row, row + static_cast<std::size_t>(std::min(kRowBlock, h.d - i)) * h.features());
            }
        }
    }

    // Tasks that compute model m's target into `into` (units_size floats), 64 units each, layer
    // by layer (task s of the first layer: its units [64 s, 64 s + 64)).
    Beside prepare(int m, float* into) {
        Beside work;
        work.count = static_cast<long>(runs_.size());
        work.task = [this, m, into](long t, int) {
            mean_of_others(sum_, of(m), inv_, runs_[t].first, runs_[t].second, into);
        };
        return work;
    }

    // Model m's target, prepared before the sum changed where units moved (touched, per hidden
    // layer), brought up to date. A move of layer l's units rewrote their rows of block l, and
    // their entries in every row of the blocks on either side (as incoming weights of block
    // l + 1, as outgoing weights of block l - 1). A block where many of those moved is
    // recomputed whole.
    void refresh(int m, const std::vector<std::vector<int>>& touched, float* target) {
        const int hidden_layers = arch_.n_layers() - 1;
        const float* units = of(m);
        auto many = [&](int l) {
            return l >= 0 && l < hidden_layers && touched[l].size() * 4 > static_cast<std::size_t>(arch_.dims[l + 1]);
        };
        std::vector<std::pair<std::size_t, std::size_t>> runs;  // entries recomputed as they lie
        std::vector<int> patched;                               // blocks whose rows get a few entries
        for (int l = 0; l < hidden_layers; ++l) {
            const Hidden h = hidden(arch_, l);
            if (many(l) || many(l - 1) || many(l + 1)) {  // the block's own tasks
                for (const auto& run : runs_)
                    if (run.first >= h.at && run.first < h.at + h.size()) runs.push_back(run);
                continue;
            }
            const std::size_t F = h.features();
            for (int u : touched[l]) runs.emplace_back(h.at + u * F, h.at + (u + 1) * F);
            const bool below_moved = l > 0 && !touched[l - 1].empty();
            const bool above_moved = l + 1 < hidden_layers && !touched[l + 1].empty();
            if (below_moved || above_moved) patched.push_back(l);
        }
        parallel_for(static_cast<long>(runs.size()), runs.size() > 8 ? n_threads_ : 1,
                     [&](long t, int) { mean_of_others(sum_, units, inv_, runs[t].first, runs[t].second, target); });
        for (int l : patched) {
            const Hidden h = hidden(arch_, l);
            const std::size_t F = h.features();
            static const std::vector<int> none;
            const std::vector<int>& in = l > 0 ? touched[l - 1] : none;                   // entries u of the rows
            const std::vector<int>& out = l + 1 < hidden_layers ? touched[l + 1] : none;  // entries tail + u
            const int threads = (in.size() + out.size()) * h.d > (1 << 14) ? n_threads_ : 1;
            for_row_blocks(h.d, threads, [&](int i0, int i1, int) {
                for (int i = i0; i < i1; ++i) {
                    const std::size_t row = h.at + i * F, tail = row + h.tail();
                    for (int u : in) mean_of_others(sum_, units, inv_, row + u, row + u + 1, target);
                    for (int u : out) mean_of_others(sum_, units, inv_, tail + u, tail + u + 1, target);
                }
            });
        }
    }

   private:
    const float* of(int m) const { return units_ + static_cast<std::size_t>(m) * size_; }

    const Arch& arch_;
    const double* sum_;
    const float* units_;
    const std::size_t size_;
    const double inv_;
    const int n_threads_;
    std::vector<std::pair<std::size_t, std::size_t>> runs_;  // each task's entries
};

// Strip s of a layer's block transposed: units [64 s, 64 s + 64) as the columns of one
// contiguous (features, 64) block that the product streams from L2.
void model_strip(const Hidden& h, const float* units, int s, float* out) {
    const int j0 = s * kStrip, width = std::min(kStrip, h.d - j0);
    const std::size_t F = h.features();
    transpose(units + h.at + j0 * F, static_cast<std::ptrdiff_t>(F), width, static_cast<int>(F), out, kStrip);
}

// Tasks that build a model's first hidden layer strips into `into` (a strip each), for the
// model's full_score to find ready.
Beside first_layer_strips(const Arch& arch, const float* units, Buffer<float>& into) {
    const Hidden h = hidden(arch, 0);
    const std::size_t strip_size = static_cast<std::size_t>(h.features()) * kStrip;
    into.resize(blocks(h.d, kStrip) * strip_size);
    Beside work;
    work.count = blocks(h.d, kStrip);
    work.task = [h, units, strip_size, out = into.data()](long s, int) {
        model_strip(h, units, static_cast<int>(s), out + s * strip_size);
    };
    return work;
}

// One set of tasks out of two, a's task t followed by b's task t on the same thread (b has no
// more tasks than a): for two passes over the same rows, the second finding them in cache.
Beside together(Beside a, Beside b) {
    Beside work;
    work.count = a.count;
    work.task = [a, b](long t, int thread) {
        a.task(t, thread);
        if (t < b.count) b.task(t, thread);
    };
    return work;
}

// score (d, d): entry (i, j) is the similarity of the target's unit i and the model's unit j,
// the target's block @ the model's transposed, one strip of columns per task. strips_ready: the
// strips are in ws.model_strips already.
void full_score(const Hidden& h, const float* target, const float* units, AlignWorkspace& ws, float* score,
                int n_threads, bool strips_ready) {
    const std::size_t F = h.features();
    ws.model_strips.resize(blocks(h.d, kStrip) * F * kStrip);
    parallel_for(blocks(h.d, kStrip), n_threads, [&](long s, int) {
        float* strip = ws.model_strips.data() + s * F * kStrip;
        if (!strips_ready) model_strip(h, units, static_cast<int>(s), strip);
        const int width = std::min(kStrip, h.d - static_cast<int>(s) * kStrip);
        gemm(Epilogue::Store,
             gemm_args(h.d, width, static_cast<int>(F), rows_of(target + h.at, static_cast<std::ptrdiff_t>(F)), strip,
                       kStrip, score + s * kStrip, h.d));
    });
}

// c (m, m) += A (m, k) @ B (k, m), rows split across threads: a score's low-rank correction.
void add_product(int m, int k, const float* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_ks, const float* b, float* c,
                 int n_threads) {
    for_row_blocks(m, n_threads, [&](int i0, int i1, int) {
        gemm(Epilogue::Add, gemm_args(i1 - i0, m, k, OperandA{a + i0 * a_rs, a_rs, a_ks}, b, m,
                                      c + static_cast<std::ptrdiff_t>(i0) * m, m));
    });
}

// The scores of the layers around hidden layer h, corrected for h's units moving by q (not yet
// applied to the units). A neighbour's score sums over h's units through the weights between
// them, so only the moved units' terms (ws.moved) change: a product of rank |moved| instead of
// a fresh score. The weights between h and a neighbour are h's units' outgoing weights (for
// h + 1) and its units' incoming weights, the outgoing weights of h - 1's units (for h - 1).
void correct_neighbours(const Arch& arch, const float* target, const float* units, int h, const int* q,
                        AlignWorkspace& ws, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    const std::vector<int>& moved = ws.moved;
    const int k = static_cast<int>(moved.size());
    if (h + 1 < hidden_layers && ws.valid[h + 1]) {
        const Hidden self = hidden(arch, h), above = hidden(arch, h + 1);
        const int n = above.d;
        const std::size_t F = above.features(), Fh = self.features();
        const float* Tu = target + above.at;  // the layer above's units: incoming feature r is h's unit r
        ws.gathered.resize(static_cast<std::size_t>(n) * k);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        for_row_blocks(n, k * n > (1 << 15) ? n_threads : 1, [&](int j0, int j1, int) {
            for (int j = j0; j < j1; ++j) {
                const float* unit = Tu + j * F;  // read along the unit's row, written along gathered's
                float* g = ws.gathered.data() + static_cast<std::size_t>(j) * k;
                for (int t = 0; t < k; ++t) g[t] = unit[moved[t]];
            }
        });
        const float* out = units + self.at + self.tail();  // unit r's outgoing weights at r * Fh
        for (int t = 0; t < k; ++t) {
            const std::size_t r = moved[t];
            const float* now = out + r * Fh;
            const float* then = out + static_cast<std::size_t>(q[r]) * Fh;
            float* c = ws.change.data() + static_cast<std::size_t>(t) * n;
            for (int j = 0; j < n; ++j) c[j] = then[j] - now[j];
        }
        add_product(n, k, ws.gathered.data(), k, 1, ws.change.data(), ws.scores[h + 1].data(), n_threads);
    }
    if (h > 0 && ws.valid[h - 1]) {
        const Hidden below = hidden(arch, h - 1);
        const int n = below.d;
        const std::size_t F = below.features();
        ws.gathered.resize(static_cast<std::size_t>(n) * k);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        for_row_blocks(n, k * n > (1 << 15) ? n_threads : 1, [&](int i0, int i1, int) {
            for (int i = i0; i < i1; ++i) {
                const float* wt = target + below.at + i * F + below.tail();
                const float* w = units + below.at + i * F + below.tail();
                for (int t = 0; t < k; ++t) {
                    const int o = moved[t];
                    ws.gathered.data()[static_cast<std::size_t>(i) * k + t] = wt[o];
                    ws.change.data()[static_cast<std::size_t>(t) * n + i] = w[q[o]] - w[o];
                }
            }
        });
        add_product(n, k, ws.gathered.data(), k, 1, ws.change.data(), ws.scores[h - 1].data(), n_threads);
    }
}

// Moves unit q[i] of hidden layer l to position i: rows of block l, and the entries of every row
// of the blocks on either side that hold the same weights. Only the moved units (moved: the i
// with q[i] != i) are touched; late in a merge that is a few percent of them. sum, optional: a
// running sum of models' units that includes these, kept equal to it.
// scratch: the moved rows (k rows), then k values per neighbour row, rows apart.
void permute_units(const Arch& arch, float* units, int l, const int* q, const std::vector<int>& moved, float* scratch,
                   double* sum, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    const Hidden self = hidden(arch, l);
    const std::size_t F = self.features(), k = moved.size();
    for (std::size_t t = 0; t < k; ++t)
        std::memcpy(scratch + t * F, units + self.at + static_cast<std::size_t>(q[moved[t]]) * F, sizeof(float) * F);
    parallel_for(static_cast<long>(k), k * F > (1 << 15) ? n_threads : 1, [&](long t, int) {
        const std::size_t at = self.at + static_cast<std::size_t>(moved[t]) * F;
        const float* taken = scratch + t * F;
        if (sum)
            for (std::size_t f = 0; f < F; ++f) sum[at + f] += double(taken[f]) - double(units[at + f]);
        std::memcpy(units + at, taken, sizeof(float) * F);
    });
    // A run of layer l's d values in a neighbour's row: the moved ones take theirs from positions
    // q, all read before any is written.
    auto permute = [&](std::size_t at, float* taken) {
        float* values = units + at;
        for (std::size_t t = 0; t < k; ++t) taken[t] = values[q[moved[t]]];
        for (std::size_t t = 0; t < k; ++t) {
            const int i = moved[t];
            if (sum) sum[at + i] += double(taken[t]) - double(values[i]);
            values[i] = taken[t];
        }
    };
    for (int side : {l - 1, l + 1}) {
        if (side < 0 || side >= hidden_layers) continue;
        const Hidden h = hidden(arch, side);
        const std::size_t run = side < l ? h.tail() : 0;  // the layer below holds l's units as outgoing weights
        for_row_blocks(h.d, k * h.d > (1 << 15) ? n_threads : 1, [&](int r0, int r1, int) {
            for (int r = r0; r < r1; ++r)
                permute(h.at + static_cast<std::size_t>(r) * h.features() + run,
                        scratch + static_cast<std::size_t>(r) * k);
        });
    }
}

// The same move in a (d, d) score: the model's unit q[j] becomes column j, rows split across
// threads (scratch: d values per thread).
void permute_columns(float* score, int d, const int* q, float* scratch, int n_threads) {
    for_row_blocks(d, n_threads, [&](int i0, int i1, int thread) {
        float* taken = scratch + static_cast<std::size_t>(thread) * d;
        for (int i = i0; i < i1; ++i) {
            float* s = score + static_cast<std::size_t>(i) * d;
            for (int j = 0; j < d; ++j) taken[j] = s[q[j]];
            std::memcpy(s, taken, sizeof(float) * d);
        }
    });
}

}  // namespace

int hidden_units(const Arch& arch) {
    int total = 0;
    for (int l = 1; l < arch.n_layers(); ++l) total += arch.dims[l];
    return total;
}

std::size_t units_size(const Arch& arch) {
    const int hidden_layers = arch.n_layers() - 1;
    if (hidden_layers == 0) return 0;
    const Hidden last = hidden(arch, hidden_layers - 1);
    return last.at + last.size();
}

void units_of(const Arch& arch, const float* row, float* units, int n_threads) {
    for (int l = 0; l + 1 < arch.n_layers(); ++l) {
        const Hidden h = hidden(arch, l);
        for_row_blocks(h.d, n_threads, [&](int i0, int i1, int) { units_from_row(h, row, i0, i1, units); });
    }
}

void row_of(const Arch& arch, const float* units, float* row, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    for (int l = 0; l < hidden_layers; ++l) {
        const Hidden h = hidden(arch, l);
        const std::size_t F = h.features();
        for_row_blocks(h.d, n_threads, [&](int i0, int i1, int) {
            const float* first = units + h.at + static_cast<std::size_t>(i0) * F;
            transpose(first, static_cast<std::ptrdiff_t>(F), i1 - i0, h.d_in, row + h.w + i0, h.d);
            for (int i = i0; i < i1; ++i) {
                const float* unit = units + h.at + static_cast<std::size_t>(i) * F;
                row[h.b + i] = unit[h.d_in];
                // W_{l+1}: the layer above's incoming weights hold the same values; the output
                // layer's are only here
                if (l + 1 == hidden_layers)
                    std::memcpy(row + h.w_next + static_cast<std::size_t>(i) * h.d_out, unit + h.tail(),
                                sizeof(float) * h.d_out);
            }
        });
    }
}

bool align_to(const Arch& arch, const float* target, float* units, int* perm, int max_sweeps, AlignWorkspace& ws,
              int n_threads, Start start, double* prices, double* row_duals, double* sum, Beside* beside) {
    const int hidden_layers = arch.n_layers() - 1;
    ws.touched.resize(hidden_layers);
    ws.is_touched.resize(hidden_layers);
    for (int l = 0; l < hidden_layers; ++l) {
        ws.touched[l].clear();
        ws.is_touched[l].assign(arch.dims[l + 1], 0);
    }
    if (hidden_layers == 0) return false;
    if (!prices) {
        ws.prices.resize(hidden_units(arch));
        prices = ws.prices.data();
    }
    ws.scratch.resize(std::max(units_size(arch), static_cast<std::size_t>(n_threads) * arch.widest()));
    ws.scores.resize(hidden_layers);
    ws.valid.assign(hidden_layers, 0);
    ws.q.resize(arch.widest());

    // A layer's assignment depends on its own units' features: its incoming weights (permuted by
    // the layer below), its bias and its outgoing weights (permuted by the layer above). Once it
    // is solved, the identity is optimal for it until a neighbour moves, so only layers whose
    // neighbour moved since their last solve are solved again, and the sweep that would only
    // confirm that nothing moves is never run. The moves made are those of full sweeps.
    // Each score is computed once per call; a move corrects the neighbours' scores in place.
    ws.dirty.assign(hidden_layers, 1);
    bool moved = false;
    for (int sweep = 0; sweep < max_sweeps; ++sweep) {
        bool changed = false;
        int offset = 0;
        for (int l = 0; l < hidden_layers; offset += arch.dims[l + 1], ++l) {
            if (!ws.dirty[l]) continue;
            ws.dirty[l] = 0;
            const Hidden layer = hidden(arch, l);
            const int d = layer.d;
            ws.scores[l].resize(static_cast<std::size_t>(d) * d);
            float* score = ws.scores[l].data();
            if (!ws.valid[l]) {
                full_score(layer, target, units, ws, score, n_threads, ws.strips_ready && l == 0);
                ws.strips_ready = false;
                ws.valid[l] = 1;
            }
            int* q = ws.q.data();
            double* layer_prices = prices + offset;
            double best = 0.0;
            auto solve = [&] {
                // a layer solved before in this call starts from its own prices, moved with its units
                best = max_assignment(score, d, q, ws.lap, sweep == 0 ? start : Start::Prices, layer_prices,
                                      row_duals ? row_duals + offset : nullptr);
            };
            if (beside && beside->count > 0) {
                parallel_for(beside->count + 1, n_threads, [&](long t, int thread) {
                    if (t == 0) solve();
                    else beside->task(t - 1, thread);
                });
                beside->count = 0;
            } else {
                solve();
            }
            double identity = 0.0;
            for (int i = 0; i < d; ++i) identity += score[static_cast<std::size_t>(i) * d + i];
            // Only a strictly better matching counts: ties must not make units swap forever.
            if (best > identity + 1e-9 * (1.0 + (identity < 0 ? -identity : identity))) {
                ws.moved.clear();
                for (int i = 0; i < d; ++i)
                    if (q[i] != i) ws.moved.push_back(i);
                for (int i : ws.moved)
                    if (!ws.is_touched[l][i]) {
                        ws.is_touched[l][i] = 1;
                        ws.touched[l].push_back(i);
                    }
                correct_neighbours(arch, target, units, l, q, ws, n_threads);
                if (hidden_layers > 1)  // with no neighbour to move it, the layer is never solved again
                    permute_columns(score, d, q, ws.scratch.data(), n_threads);
                permute_units(arch, units, l, q, ws.moved, ws.scratch.data(), sum, n_threads);
                int* p = perm + offset;
                ws.composed.resize(d);
                for (int i = 0; i < d; ++i) ws.composed[i] = p[q[i]];
                std::memcpy(p, ws.composed.data(), sizeof(int) * d);
                ws.moved_prices.assign(layer_prices, layer_prices + d);  // prices follow their columns
                for (int i = 0; i < d; ++i) layer_prices[i] = ws.moved_prices[q[i]];
                if (l > 0) ws.dirty[l - 1] = 1;
                if (l + 1 < hidden_layers) ws.dirty[l + 1] = 1;
                changed = true;
            }
        }
        moved |= changed;
        if (!changed) break;
    }
    return moved;
}

int align_stack(const Arch& arch, float* params, int n_models, int reference, int max_rounds, int* perms,
                int n_threads) {
    const int H = hidden_units(arch);
    const std::size_t P = arch.n_params;
    for (int m = 0; m < n_models; ++m) {
        int* p = perms + static_cast<std::size_t>(m) * H;
        for (int l = 1, off = 0; l < arch.n_layers(); off += arch.dims[l], ++l)
            for (int i = 0; i < arch.dims[l]; ++i) p[off + i] = i;
    }
    if (H == 0 || n_models < 2) return 0;
    const int threads = n_threads < n_models ? n_threads : n_models;
    const std::size_t U = units_size(arch);
    Buffer<float> all_units(static_cast<std::size_t>(n_models) * U);
    float* const units = all_units.data();
    auto of = [&](int m) { return units + static_cast<std::size_t>(m) * U; };
    parallel_for(n_models, threads, [&](long m, int) { units_of(arch, params + m * P, of(static_cast<int>(m)), 1); });

    std::vector<std::unique_ptr<AlignWorkspace>> spaces(threads);
    auto space = [&](int t) -> AlignWorkspace& {
        if (!spaces[t]) spaces[t] = std::make_unique<AlignWorkspace>();
        return *spaces[t];
    };
    constexpr int kSweeps = 50;
    // Each model's assignment prices carry over from one round to the next.
    std::vector<double> prices(static_cast<std::size_t>(n_models) * H, 0.0);
    const int first_model = reference == 0 ? 1 : 0;  // the first matched in a round
    {
        // Every model to the reference, in parallel. These problems share their rows (the
        // reference's units), so the first model's row duals start the others' solves.
        const float* ref = of(reference);
        std::vector<double> first_duals(H);
        align_to(arch, ref, of(first_model), perms + first_model * H, kSweeps, space(0), n_threads, Start::Cold,
                 prices.data() + first_model * H, first_duals.data());
        parallel_for(n_models, threads, [&](long m, int t) {
            if (m == reference || m == first_model) return;
            std::vector<double> duals(first_duals);
            align_to(arch, ref, of(static_cast<int>(m)), perms + m * H, kSweeps, space(t), 1, Start::RowDuals,
                     prices.data() + m * H, duals.data());
        });
    }

    int rounds = 0;
    if (max_rounds > 0) {
        std::vector<double> sum(U, 0.0);
        for (int m = 0; m < n_models; ++m) {
            const float* u = of(m);
            for (std::size_t j = 0; j < U; ++j) sum[j] += u[j];
        }
        Buffer<float> now_target(U), next_target(U);
        float* now = now_target.data();
        float* next = next_target.data();
        MeanOfOthers mean(arch, sum.data(), units, n_models, n_threads);
        // the model matched after m: the next index, the reference skipped, the last wrapping to
        // the first of the next round
        auto after = [&](int m) { return (m + 1) % n_models == reference ? (m + 2) % n_models : (m + 1) % n_models; };

        std::vector<double> duals(H);
        AlignWorkspace& ws = space(0);
        Buffer<float> next_strips;  // the next model's first hidden layer strips, built beside
        Beside first = mean.prepare(first_model, now);
        parallel_for(first.count, n_threads, first.task);
        while (rounds < max_rounds) {
            ++rounds;
            bool any = false;
            int m = first_model;
            do {
                const int m_next = after(m);
                // beside m's first assignment: m_next's target, and its first product's operand
                // (m's moves leave m_next's units as they are); both read m_next's units, 64 at a time
                Beside work = together(mean.prepare(m_next, next), first_layer_strips(arch, of(m_next), next_strips));
                // A model's prices belong to its last target. In the first round that was the
                // reference, far from the mean of the others; the mean barely changes from one
                // model to the next, so there a match starts from the previous match's row duals.
                const Start start = rounds == 1 && m != first_model ? Start::RowDuals : Start::Prices;
                any |= align_to(arch, now, of(m), perms + static_cast<std::size_t>(m) * H, kSweeps, ws, n_threads,
                                start, prices.data() + static_cast<std::size_t>(m) * H, duals.data(), sum.data(),
                                &work);
                mean.refresh(m_next, ws.touched, next);
                std::swap(ws.model_strips, next_strips);
                ws.strips_ready = true;
                std::swap(now, next);
                m = m_next;
            } while (m != first_model);
            if (!any) break;
        }
    }
    parallel_for(n_models, threads, [&](long m, int) {
        if (m != reference) row_of(arch, of(static_cast<int>(m)), params + m * P, 1);
    });
    return rounds;
}

}  // namespace segfast
