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

// Hidden layer h of a model: its width, the widths around it, and where its weights sit.
struct Hidden {
    int d_in, d, d_out;
    std::size_t w, b, w_next;  // offsets of W_h (d_in, d), b_h (d) and W_{h+1} (d, d_out)
    int features() const { return d_in + 1 + d_out; }
};

Hidden hidden(const Arch& arch, int h) {
    return {arch.dims[h], arch.dims[h + 1], arch.dims[h + 2], arch.w_off[h], arch.b_off[h], arch.w_off[h + 1]};
}

// Rows [i0, i1) of hidden layer h's units (see TargetUnits) taken from a parameter row.
void units_from_row(const Hidden& h, const float* row, int i0, int i1, float* out) {
    const std::size_t F = h.features();
    transpose(row + h.w + i0, h.d, h.d_in, i1 - i0, out + i0 * F, static_cast<std::ptrdiff_t>(F));
    for (int i = i0; i < i1; ++i) {
        float* unit = out + i * F + h.d_in;
        unit[0] = row[h.b + i];
        std::memcpy(unit + 1, row + h.w_next + static_cast<std::size_t>(i) * h.d_out, sizeof(float) * h.d_out);
    }
}

// Entry j of the mean of the other models, (sum - row) / (n - 1), with sum including row.
inline float mean_of_others(const double* sum, const float* row, double inv, std::size_t j) {
    return static_cast<float>((sum[j] - row[j]) * inv);
}

// Unit i's bias and outgoing weights (the tail of its row in TargetUnits, `unit`) in the mean
// of the other models.
void mean_unit_tail(const Hidden& h, const double* sum, const float* row, double inv, int i, float* unit) {
    unit[0] = mean_of_others(sum, row, inv, h.b + i);
    for (int o = 0; o < h.d_out; ++o)
        unit[1 + o] = mean_of_others(sum, row, inv, h.w_next + static_cast<std::size_t>(i) * h.d_out + o);
}

// Part of the mean of the other models' units: for task t < blocks(d_in, kRowBlock), the
// incoming weights from W_h's rows [64 t, 64 t + 64) (read in order: sum's rows are 4 KB apart
// for 512 units, so walking a block of units down them restarts the prefetcher every row);
// for the last task, the biases and outgoing weights.
// scratch: kRowBlock x d floats (the rows before their transpose).
void units_from_mean(const Hidden& h, const double* sum, const float* row, double inv, int task, float* out,
                     float* scratch) {
    const std::size_t F = h.features();
    const int p0 = task * kRowBlock;
    if (p0 < h.d_in) {
        const int rows = std::min(kRowBlock, h.d_in - p0);
        const std::size_t at = h.w + static_cast<std::size_t>(p0) * h.d;
        for (std::size_t j = 0; j < static_cast<std::size_t>(rows) * h.d; ++j) scratch[j] = mean_of_others(sum, row, inv, at + j);
        transpose(scratch, h.d, rows, h.d, out + p0, static_cast<std::ptrdiff_t>(F));
        return;
    }
    for (int i = 0; i < h.d; ++i) mean_unit_tail(h, sum, row, inv, i, out + i * F + h.d_in);
}

// The target of align_stack's rounds, model by model: the mean of the other models as units.
// A model's is prepared while the previous model's assignment is solved (prepare, run beside
// it), from the sum as it then stands; that match's moves are then patched in (refresh).
class MeanOfOthers {
   public:
    MeanOfOthers(const Arch& arch, const double* sum, const float* params, int n_models, int n_threads)
        : arch_(arch), sum_(sum), params_(params), inv_(1.0 / (n_models - 1)), n_threads_(n_threads),
          scratch_(n_threads) {
        for (auto& s : scratch_) s.resize(static_cast<std::size_t>(arch.widest()) * kRowBlock);
        for (int l = 0; l + 1 < arch.n_layers(); ++l)
            for (int t = 0; t <= blocks(arch.dims[l], kRowBlock); ++t) tasks_.emplace_back(l, t);
    }

    // Tasks that compute model m's target into `into` (one (d, features) buffer per hidden layer).
    Beside prepare(int m, TargetUnits& into) {
        Beside work;
        work.count = static_cast<long>(tasks_.size());
        work.task = [this, m, &into](long t, int thread) { run(m, tasks_[t], into, thread); };
        return work;
    }

    // Model m's target, prepared before the sum changed at the positions whose units moved
    // (touched, per hidden layer), brought up to date: a layer where many units moved is
    // recomputed in full (in order); elsewhere each moved position's own unit, and its column
    // among the features of the layers on either side.
    void refresh(int m, const std::vector<std::vector<int>>& touched, TargetUnits& target) {
        const int hidden_layers = arch_.n_layers() - 1;
        std::vector<char> whole(hidden_layers);
        std::vector<std::pair<int, int>> redo;
        for (int l = 0; l < hidden_layers; ++l) {
            whole[l] = touched[l].size() * 4 > static_cast<std::size_t>(arch_.dims[l + 1]);
            for (const auto& task : tasks_)
                if (whole[l] && task.first == l) redo.push_back(task);
        }
        parallel_for(static_cast<long>(redo.size()), n_threads_, [&](long t, int thread) { run(m, redo[t], target, thread); });
        const float* row = params_ + static_cast<std::size_t>(m) * arch_.n_params;
        for (int l = 0; l < hidden_layers; ++l) {
            const std::vector<int>& moved = touched[l];
            if (moved.empty()) continue;
            const Hidden h = hidden(arch_, l);
            if (!whole[l]) own_units(h, row, moved, target[l].data());
            if (l > 0 && !whole[l - 1]) {  // the layer below: W_l's entry (r, u) is its unit r's outgoing feature u
                const Hidden below = hidden(arch_, l - 1);
                const std::size_t F = below.features();
                float* T = target[l - 1].data();
                for (int r = 0; r < below.d; ++r)
                    for (int u : moved) T[r * F + below.d_in + 1 + u] = mean(row, h.w + static_cast<std::size_t>(r) * h.d + u);
            }
            if (l + 1 < hidden_layers && !whole[l + 1]) {  // the layer above: W_{l+1}'s entry (u, j) is its unit j's feature u
                const Hidden above = hidden(arch_, l + 1);
                const std::size_t F = above.features();
                float* T = target[l + 1].data();
                for (int u : moved)
                    for (int j = 0; j < above.d; ++j) T[j * F + u] = mean(row, h.w_next + static_cast<std::size_t>(u) * h.d_out + j);
            }
        }
    }

   private:
    float mean(const float* row, std::size_t j) const { return mean_of_others(sum_, row, inv_, j); }

    void run(int m, std::pair<int, int> task, TargetUnits& into, int thread) {
        units_from_mean(hidden(arch_, task.first), sum_, params_ + static_cast<std::size_t>(m) * arch_.n_params, inv_,
                        task.second, into[task.first].data(), scratch_[thread].data());
    }

    // The moved units' rows of layer h: incoming weights a block of W_h's rows per task, then
    // the biases and outgoing weights.
    void own_units(const Hidden& h, const float* row, const std::vector<int>& moved, float* T) {
        const std::size_t F = h.features();
        const long row_blocks = blocks(h.d_in, kRowBlock);
        parallel_for(row_blocks + 1, moved.size() * h.d_in > (1 << 14) ? n_threads_ : 1, [&](long task, int) {
            if (task == row_blocks) {
                for (int u : moved) mean_unit_tail(h, sum_, row, inv_, u, T + u * F + h.d_in);
                return;
            }
            const int p0 = static_cast<int>(task) * kRowBlock;
            for (int p = p0; p < std::min(h.d_in, p0 + kRowBlock); ++p) {
                const std::size_t at = h.w + static_cast<std::size_t>(p) * h.d;
                for (int u : moved) T[u * F + p] = mean(row, at + u);
            }
        });
    }

    const Arch& arch_;
    const double* sum_;
    const float* params_;
    const double inv_;
    const int n_threads_;
    std::vector<Buffer<float>> scratch_;     // a thread's rows before their transpose
    std::vector<std::pair<int, int>> tasks_;  // (hidden layer, task of units_from_mean)
};

// Strip s of the model's features: columns [64 s, 64 s + 64) of the (features, d) matrix whose
// column j is unit j, as one contiguous (features, 64) block that the product streams from L2
// (B read in place, 2 KB apart row to row, ran at half the speed).
void model_strip(const Hidden& h, const float* row, int s, float* out) {
    const int j0 = s * kStrip, width = std::min(kStrip, h.d - j0);
    const float* W = row + h.w + j0;
    for (int p = 0; p < h.d_in; ++p)
        std::memcpy(out + static_cast<std::size_t>(p) * kStrip, W + static_cast<std::size_t>(p) * h.d,
                    sizeof(float) * width);
    std::memcpy(out + static_cast<std::size_t>(h.d_in) * kStrip, row + h.b + j0, sizeof(float) * width);
    transpose(row + h.w_next + static_cast<std::size_t>(j0) * h.d_out, h.d_out, width, h.d_out,
              out + static_cast<std::size_t>(h.d_in + 1) * kStrip, kStrip);
}

// score (d, d): entry (i, j) is the similarity of the target's unit i and the model's unit j,
// target units @ model features, one strip of columns per task.
void full_score(const Hidden& h, const float* target_units, const float* row, AlignWorkspace& ws, float* score,
                int n_threads) {
    const std::size_t F = h.features();
    ws.model_strips.resize(blocks(h.d, kStrip) * F * kStrip);
    parallel_for(blocks(h.d, kStrip), n_threads, [&](long s, int) {
        float* strip = ws.model_strips.data() + s * F * kStrip;
        model_strip(h, row, static_cast<int>(s), strip);
        GemmArgs g;
        g.m = h.d;
        g.n = std::min(kStrip, h.d - static_cast<int>(s) * kStrip);
        g.k = static_cast<int>(F);
        g.a = target_units;
        g.a_rs = static_cast<std::ptrdiff_t>(F);
        g.a_ks = 1;
        g.b = strip;
        g.ldb = kStrip;
        g.c = score + s * kStrip;
        g.ldc = h.d;
        gemm(Epilogue::Store, g);
    });
}

// c (m, m) += A (m, k) @ B (k, m), rows split across threads: a score's low-rank correction.
void add_product(int m, int k, const float* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_ks, const float* b,
                 float* c, int n_threads) {
    parallel_for(blocks(m, kRowBlock), n_threads, [&](long block, int) {
        GemmArgs g;
        g.m = std::min(kRowBlock, m - static_cast<int>(block) * kRowBlock);
        g.n = m;
        g.k = k;
        g.a = a + block * kRowBlock * a_rs;
        g.a_rs = a_rs;
        g.a_ks = a_ks;
        g.b = b;
        g.ldb = m;
        g.c = c + block * kRowBlock * m;
        g.ldc = m;
        gemm(Epilogue::Add, g);
    });
}

// The scores of the layers around hidden layer h, corrected for h's units moving by q (not yet
// applied to row). A neighbour's score sums over h's units through the weights between them,
// so only the moved units' terms (ws.moved) change: a product of rank |moved| instead of a
// fresh score.
//  - layer h + 1: its incoming weights W_{h+1} have their rows (h's units) permuted;
//  - layer h - 1: its outgoing weights W_h have their columns (h's units) permuted.
void correct_neighbours(const Arch& arch, const TargetUnits& target, const float* row, int h, const int* q,
                        AlignWorkspace& ws, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    const int d = arch.dims[h + 1];
    const std::vector<int>& moved = ws.moved;
    const int k = static_cast<int>(moved.size());
    if (h + 1 < hidden_layers && ws.valid[h + 1]) {
        const int n = arch.dims[h + 2];
        const float* Tu = target[h + 1].data();  // the layer above's units: feature r is W_{h+1}'s entry (r, unit)
        const std::size_t F = hidden(arch, h + 1).features();
        const float* W = row + arch.w_off[h + 1];
        ws.gathered.resize(static_cast<std::size_t>(n) * k);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        parallel_for(blocks(n, kRowBlock), k * n > (1 << 15) ? n_threads : 1, [&](long block, int) {
            for (int j = static_cast<int>(block) * kRowBlock; j < std::min(n, (static_cast<int>(block) + 1) * kRowBlock); ++j) {
                const float* unit = Tu + j * F;  // read along the unit's row, written along gathered's
                float* g = ws.gathered.data() + static_cast<std::size_t>(j) * k;
                for (int t = 0; t < k; ++t) g[t] = unit[moved[t]];
            }
        });
        for (int t = 0; t < k; ++t) {
            const std::size_t r = moved[t];
            const float* now = W + r * n;
            const float* then = W + static_cast<std::size_t>(q[r]) * n;
            float* c = ws.change.data() + static_cast<std::size_t>(t) * n;
            for (int j = 0; j < n; ++j) c[j] = then[j] - now[j];
        }
        add_product(n, k, ws.gathered.data(), k, 1, ws.change.data(), ws.scores[h + 1].data(), n_threads);
    }
    if (h > 0 && ws.valid[h - 1]) {
        const int n = arch.dims[h];
        const Hidden below = hidden(arch, h - 1);  // its units' outgoing features are W_h's rows
        const std::size_t F = below.features();
        const float* W = row + arch.w_off[h];
        ws.gathered.resize(static_cast<std::size_t>(n) * k);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        parallel_for(blocks(n, kRowBlock), k * n > (1 << 15) ? n_threads : 1, [&](long block, int) {
            for (int i = static_cast<int>(block) * kRowBlock; i < std::min(n, (static_cast<int>(block) + 1) * kRowBlock); ++i) {
                const float* wt = target[h - 1].data() + i * F + below.d_in + 1;
                const float* w = W + static_cast<std::size_t>(i) * d;
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

// Moves unit q[i] of hidden layer l to position i: columns of W_l, entries of b_l, rows of W_{l+1}.
// Only the moved units (moved: the i with q[i] != i) are touched; late in a merge that is a few
// percent of them. sum, optional: a running sum of rows that includes this row, kept equal to it.
// W_l's rows are split across threads (scratch: k values per row, rows apart).
void permute_layer(const Arch& arch, float* row, int l, const int* q, const std::vector<int>& moved, float* scratch,
                   double* sum, int n_threads) {
    const int d_in = arch.dims[l], d = arch.dims[l + 1], d_out = arch.dims[l + 2];
    const std::size_t k = moved.size();
    // A run of d values: the moved ones take theirs from positions q, all read before any is written.
    auto permute = [&](float* values, double* total, float* taken) {
        for (std::size_t t = 0; t < k; ++t) taken[t] = values[q[moved[t]]];
        for (std::size_t t = 0; t < k; ++t) {
            const int i = moved[t];
            if (total) total[i] += double(taken[t]) - double(values[i]);
            values[i] = taken[t];
        }
    };
    parallel_for(blocks(d_in, kRowBlock), k * d_in > (1 << 15) ? n_threads : 1, [&](long block, int) {
        for (int r = static_cast<int>(block) * kRowBlock; r < std::min(d_in, (static_cast<int>(block) + 1) * kRowBlock); ++r) {
            const std::size_t at = arch.w_off[l] + static_cast<std::size_t>(r) * d;
            permute(row + at, sum ? sum + at : nullptr, scratch + static_cast<std::size_t>(r) * k);
        }
    });
    permute(row + arch.b_off[l], sum ? sum + arch.b_off[l] : nullptr, scratch);
    float* next = row + arch.w_off[l + 1];
    double* next_sum = sum ? sum + arch.w_off[l + 1] : nullptr;
    for (std::size_t t = 0; t < k; ++t)
        std::memcpy(scratch + t * d_out, next + static_cast<std::size_t>(q[moved[t]]) * d_out, sizeof(float) * d_out);
    for (std::size_t t = 0; t < k; ++t) {
        const std::size_t at = static_cast<std::size_t>(moved[t]) * d_out;
        if (next_sum)
            for (int o = 0; o < d_out; ++o) next_sum[at + o] += double(scratch[t * d_out + o]) - double(next[at + o]);
        std::memcpy(next + at, scratch + t * d_out, sizeof(float) * d_out);
    }
}

// The same move in a (d, d) score: the model's unit q[j] becomes column j, rows split across
// threads (scratch: d values per thread).
void permute_columns(float* score, int d, const int* q, float* scratch, int n_threads) {
    parallel_for(blocks(d, kRowBlock), n_threads, [&](long block, int thread) {
        float* taken = scratch + static_cast<std::size_t>(thread) * d;
        for (int i = static_cast<int>(block) * kRowBlock; i < std::min(d, (static_cast<int>(block) + 1) * kRowBlock); ++i) {
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

void units_of(const Arch& arch, const float* row, TargetUnits& units, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    units.resize(hidden_layers);
    for (int l = 0; l < hidden_layers; ++l) {
        const Hidden h = hidden(arch, l);
        units[l].resize(static_cast<std::size_t>(h.d) * h.features());
        parallel_for(blocks(h.d, kRowBlock), n_threads, [&](long block, int) {
            const int i0 = static_cast<int>(block) * kRowBlock;
            units_from_row(h, row, i0, std::min(i0 + kRowBlock, h.d), units[l].data());
        });
    }
}

bool align_to(const Arch& arch, const TargetUnits& target, float* row, int* perm, int max_sweeps, AlignWorkspace& ws,
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
    ws.scratch.resize(std::max<std::size_t>(arch.n_params, static_cast<std::size_t>(n_threads) * arch.widest()));
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
                full_score(layer, target[l].data(), row, ws, score, n_threads);
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
                    if (t == 0)
                        solve();
                    else
                        beside->task(t - 1, thread);
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
                correct_neighbours(arch, target, row, l, q, ws, n_threads);
                if (hidden_layers > 1)  // with no neighbour to move it, the layer is never solved again
                    permute_columns(score, d, q, ws.scratch.data(), n_threads);
                permute_layer(arch, row, l, q, ws.moved, ws.scratch.data(), sum, n_threads);
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
    const int hidden_layers = arch.n_layers() - 1;
    const int threads = n_threads < n_models ? n_threads : n_models;
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
        TargetUnits ref;
        units_of(arch, params + static_cast<std::size_t>(reference) * P, ref, n_threads);
        std::vector<double> first_duals(H);
        align_to(arch, ref, params + first_model * P, perms + first_model * H, kSweeps, space(0), n_threads, Start::Cold,
                 prices.data() + first_model * H, first_duals.data());
        parallel_for(n_models, threads, [&](long m, int t) {
            if (m == reference || m == first_model) return;
            std::vector<double> duals(first_duals);
            align_to(arch, ref, params + m * P, perms + m * H, kSweeps, space(t), 1, Start::RowDuals, prices.data() + m * H,
                     duals.data());
        });
    }

    std::vector<double> sum(P, 0.0);
    for (int m = 0; m < n_models; ++m) {
        const float* row = params + static_cast<std::size_t>(m) * P;
        for (std::size_t j = 0; j < P; ++j) sum[j] += row[j];
    }
    TargetUnits now(hidden_layers), next(hidden_layers);
    for (int l = 0; l < hidden_layers; ++l) {
        const Hidden h = hidden(arch, l);
        now[l].resize(static_cast<std::size_t>(h.d) * h.features());
        next[l].resize(static_cast<std::size_t>(h.d) * h.features());
    }
    MeanOfOthers mean(arch, sum.data(), params, n_models, n_threads);
    // the model matched after m: the next index, the reference skipped, the last wrapping to the
    // first of the next round
    auto after = [&](int m) { return (m + 1) % n_models == reference ? (m + 2) % n_models : (m + 1) % n_models; };

    std::vector<double> duals(H);
    AlignWorkspace& ws = space(0);
    if (max_rounds > 0) {
        Beside first = mean.prepare(first_model, now);
        parallel_for(first.count, n_threads, first.task);
    }
    int rounds = 0;
    while (rounds < max_rounds) {
        ++rounds;
        bool any = false;
        int m = first_model;
        do {
            const int m_next = after(m);
            Beside work = mean.prepare(m_next, next);
            // A model's prices belong to its last target. In the first round that was the
            // reference, far from the mean of the others; the mean barely changes from one
            // model to the next, so there a match starts from the previous match's row duals.
            const Start start = rounds == 1 && m != first_model ? Start::RowDuals : Start::Prices;
            any |= align_to(arch, now, params + static_cast<std::size_t>(m) * P, perms + static_cast<std::size_t>(m) * H,
                            kSweeps, ws, n_threads, start, prices.data() + static_cast<std::size_t>(m) * H, duals.data(),
                            sum.data(), &work);
            mean.refresh(m_next, ws.touched, next);
            std::swap(now, next);
            m = m_next;
        } while (m != first_model);
        if (!any) break;
    }
    return rounds;
}

}  // namespace segfast
