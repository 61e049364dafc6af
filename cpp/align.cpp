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

// Rows [i0, i1) of the target's features, unit by unit: row i holds unit i's incoming weights,
// its bias and its outgoing weights, contiguous, so the product reads A a row at a time.
void target_units(const Hidden& h, const float* row, int i0, int i1, float* out) {
    const std::size_t F = h.features();
    transpose(row + h.w + i0, h.d, h.d_in, i1 - i0, out + i0 * F, static_cast<std::ptrdiff_t>(F));
    for (int i = i0; i < i1; ++i) {
        float* unit = out + i * F + h.d_in;
        unit[0] = row[h.b + i];
        std::memcpy(unit + 1, row + h.w_next + static_cast<std::size_t>(i) * h.d_out, sizeof(float) * h.d_out);
    }
}

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
// target features^T @ model features, one strip of columns per task.
void full_score(const Hidden& h, const float* target, const float* row, AlignWorkspace& ws, float* score,
                int n_threads) {
    const std::size_t F = h.features();
    ws.target_units.resize(h.d * F);
    ws.model_strips.resize(blocks(h.d, kStrip) * F * kStrip);
    parallel_for(blocks(h.d, kRowBlock), n_threads, [&](long block, int) {
        const int i0 = static_cast<int>(block) * kRowBlock;
        target_units(h, target, i0, std::min(i0 + kRowBlock, h.d), ws.target_units.data());
    });
    parallel_for(blocks(h.d, kStrip), n_threads, [&](long s, int) {
        float* strip = ws.model_strips.data() + s * F * kStrip;
        model_strip(h, row, static_cast<int>(s), strip);
        GemmArgs g;
        g.m = h.d;
        g.n = std::min(kStrip, h.d - static_cast<int>(s) * kStrip);
        g.k = static_cast<int>(F);
        g.a = ws.target_units.data();
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
void correct_neighbours(const Arch& arch, const float* target, const float* row, int h, const int* q,
                        AlignWorkspace& ws, int n_threads) {
    const int hidden_layers = arch.n_layers() - 1;
    const int d = arch.dims[h + 1];
    const std::vector<int>& moved = ws.moved;
    const int k = static_cast<int>(moved.size());
    if (h + 1 < hidden_layers && ws.valid[h + 1]) {
        const int n = arch.dims[h + 2];
        const float* Wt = target + arch.w_off[h + 1];  // (d, n)
        const float* W = row + arch.w_off[h + 1];
        ws.gathered.resize(static_cast<std::size_t>(k) * n);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        for (int t = 0; t < k; ++t) {
            const std::size_t r = moved[t];
            const float* now = W + r * n;
            const float* then = W + static_cast<std::size_t>(q[r]) * n;
            std::memcpy(ws.gathered.data() + static_cast<std::size_t>(t) * n, Wt + r * n, sizeof(float) * n);
            float* c = ws.change.data() + static_cast<std::size_t>(t) * n;
            for (int j = 0; j < n; ++j) c[j] = then[j] - now[j];
        }
        add_product(n, k, ws.gathered.data(), 1, n, ws.change.data(), ws.scores[h + 1].data(), n_threads);
    }
    if (h > 0 && ws.valid[h - 1]) {
        const int n = arch.dims[h];
        const float* Wt = target + arch.w_off[h];  // (n, d)
        const float* W = row + arch.w_off[h];
        ws.gathered.resize(static_cast<std::size_t>(n) * k);
        ws.change.resize(static_cast<std::size_t>(k) * n);
        for (int i = 0; i < n; ++i) {
            const float* wt = Wt + static_cast<std::size_t>(i) * d;
            const float* w = W + static_cast<std::size_t>(i) * d;
            for (int t = 0; t < k; ++t) {
                const int o = moved[t];
                ws.gathered.data()[static_cast<std::size_t>(i) * k + t] = wt[o];
                ws.change.data()[static_cast<std::size_t>(t) * n + i] = w[q[o]] - w[o];
            }
        }
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

// The same move in a (d, d) score: the model's unit q[j] becomes column j.
void permute_columns(float* score, int d, const int* q, float* scratch) {
    for (int i = 0; i < d; ++i) {
        float* s = score + static_cast<std::size_t>(i) * d;
        for (int j = 0; j < d; ++j) scratch[j] = s[q[j]];
        std::memcpy(s, scratch, sizeof(float) * d);
    }
}

}  // namespace

int hidden_units(const Arch& arch) {
    int total = 0;
    for (int l = 1; l < arch.n_layers(); ++l) total += arch.dims[l];
    return total;
}

bool align_to(const Arch& arch, const float* target, float* row, int* perm, int max_sweeps, AlignWorkspace& ws,
              int n_threads, Start start, double* prices, double* row_duals, double* sum) {
    const int hidden_layers = arch.n_layers() - 1;
    if (hidden_layers == 0) return false;
    if (!prices) {
        ws.prices.resize(hidden_units(arch));
        prices = ws.prices.data();
    }
    ws.scratch.resize(arch.n_params);
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
                full_score(layer, target, row, ws, score, n_threads);
                ws.valid[l] = 1;
            }
            int* q = ws.q.data();
            double* layer_prices = prices + offset;
            // a layer solved before in this call starts from its own prices, moved with its units
            const double best = max_assignment(score, d, q, ws.lap, sweep == 0 ? start : Start::Prices, layer_prices,
                                               row_duals ? row_duals + offset : nullptr);
            double identity = 0.0;
            for (int i = 0; i < d; ++i) identity += score[static_cast<std::size_t>(i) * d + i];
            // Only a strictly better matching counts: ties must not make units swap forever.
            if (best > identity + 1e-9 * (1.0 + (identity < 0 ? -identity : identity))) {
                ws.moved.clear();
                for (int i = 0; i < d; ++i)
                    if (q[i] != i) ws.moved.push_back(i);
                correct_neighbours(arch, target, row, l, q, ws, n_threads);
                if (hidden_layers > 1)  // with no neighbour to move it, the layer is never solved again
                    permute_columns(score, d, q, ws.scratch.data());
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
    const int threads = n_threads < n_models ? n_threads : n_models;
    std::vector<std::unique_ptr<AlignWorkspace>> spaces(threads);
    auto space = [&](int t) -> AlignWorkspace& {
        if (!spaces[t]) spaces[t] = std::make_unique<AlignWorkspace>();
        return *spaces[t];
    };
    constexpr int kSweeps = 50;
    const float* ref = params + static_cast<std::size_t>(reference) * P;
    // Each model's assignment prices carry over from one round to the next.
    std::vector<double> prices(static_cast<std::size_t>(n_models) * H, 0.0);
    parallel_for(n_models, threads, [&](long m, int t) {
        if (m != reference)
            align_to(arch, ref, params + m * P, perms + m * H, kSweeps, space(t), 1, Start::Cold, prices.data() + m * H);
    });

    std::vector<double> sum(P, 0.0);
    for (int m = 0; m < n_models; ++m) {
        const float* row = params + static_cast<std::size_t>(m) * P;
        for (std::size_t j = 0; j < P; ++j) sum[j] += row[j];
    }
    std::vector<float> target(P);
    std::vector<double> duals(H);
    AlignWorkspace& ws = space(0);
    const double inv = 1.0 / (n_models - 1);
    const int first_model = reference == 0 ? 1 : 0;  // the first matched in a round
    int rounds = 0;
    while (rounds < max_rounds) {
        ++rounds;
        bool any = false;
        for (int m = 0; m < n_models; ++m) {
            if (m == reference) continue;
            float* row = params + static_cast<std::size_t>(m) * P;
            constexpr std::size_t kSpan = 1 << 16;
            parallel_for(static_cast<long>((P + kSpan - 1) / kSpan), n_threads, [&](long span, int) {
                for (std::size_t j = span * kSpan; j < std::min(P, (span + 1) * kSpan); ++j)
                    target[j] = static_cast<float>((sum[j] - row[j]) * inv);
            });
            // A model's prices belong to its last target. In the first round that was the
            // reference, far from the mean of the others; the mean barely changes from one
            // model to the next, so there a match starts from the previous match's row duals.
            const Start start = rounds == 1 && m != first_model ? Start::RowDuals : Start::Prices;
            any |= align_to(arch, target.data(), row, perms + static_cast<std::size_t>(m) * H, kSweeps, ws, n_threads,
                            start, prices.data() + static_cast<std::size_t>(m) * H, duals.data(), sum.data());
        }
        if (!any) break;
    }
    return rounds;
}

}  // namespace segfast
