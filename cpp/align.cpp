#include "align.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "gemm.h"
#include "threads.h"

namespace segfast {

namespace {

// Unit j's features of hidden layer l as column j of a (d_in + 1 + d_out, d) matrix: its
// incoming weights (W_l is already (d_in, d)), its bias, its outgoing weights (W_{l+1}^T).
void unit_features(const Arch& arch, const float* row, int l, float* out) {
    const int d_in = arch.dims[l], d = arch.dims[l + 1], d_out = arch.dims[l + 2];
    std::memcpy(out, row + arch.w_off[l], sizeof(float) * d_in * d);
    std::memcpy(out + static_cast<std::size_t>(d_in) * d, row + arch.b_off[l], sizeof(float) * d);
    const float* next = row + arch.w_off[l + 1];  // (d, d_out)
    float* dst = out + static_cast<std::size_t>(d_in + 1) * d;
    for (int j = 0; j < d; ++j)
        for (int o = 0; o < d_out; ++o) dst[static_cast<std::size_t>(o) * d + j] = next[static_cast<std::size_t>(j) * d_out + o];
}

// Moves unit q[i] of hidden layer l to position i: columns of W_l, entries of b_l, rows of W_{l+1}.
void permute_layer(const Arch& arch, float* row, int l, const int* q, float* scratch) {
    const int d_in = arch.dims[l], d = arch.dims[l + 1], d_out = arch.dims[l + 2];
    float* W = row + arch.w_off[l];
    for (int k = 0; k < d_in; ++k) {
        float* w = W + static_cast<std::size_t>(k) * d;
        for (int i = 0; i < d; ++i) scratch[i] = w[q[i]];
        std::memcpy(w, scratch, sizeof(float) * d);
    }
    float* b = row + arch.b_off[l];
    for (int i = 0; i < d; ++i) scratch[i] = b[q[i]];
    std::memcpy(b, scratch, sizeof(float) * d);
    float* next = row + arch.w_off[l + 1];
    for (int i = 0; i < d; ++i)
        std::memcpy(scratch + static_cast<std::size_t>(i) * d_out, next + static_cast<std::size_t>(q[i]) * d_out, sizeof(float) * d_out);
    std::memcpy(next, scratch, sizeof(float) * d * d_out);
}

}  // namespace

int hidden_units(const Arch& arch) {
    int total = 0;
    for (int l = 1; l < arch.n_layers(); ++l) total += arch.dims[l];
    return total;
}

bool align_to(const Arch& arch, const float* target, float* row, int* perm, int max_sweeps, AlignWorkspace& ws,
              int n_threads, double* prices, bool warm) {
    const int hidden_layers = arch.n_layers() - 1;
    if (hidden_layers == 0) return false;
    std::size_t widest_features = 0, widest = 0;
    for (int l = 0; l < hidden_layers; ++l) {
        const std::size_t d = arch.dims[l + 1];
        const std::size_t f = (arch.dims[l] + 1 + arch.dims[l + 2]) * d;
        widest_features = f > widest_features ? f : widest_features;
        widest = d > widest ? d : widest;
    }
    ws.target_features.resize(widest_features);
    ws.model_features.resize(widest_features);
    ws.score.resize(widest * widest);
    ws.scratch.resize(arch.n_params);
    ws.q.resize(widest);

    // A layer's assignment depends on its own units' features: its incoming weights (permuted by
    // the layer below), its bias and its outgoing weights (permuted by the layer above). Once it
    // is solved, the identity is optimal for it until a neighbour moves, so only layers whose
    // neighbour moved since their last solve are solved again, and the sweep that would only
    // confirm that nothing moves is never run. The moves made are those of full sweeps.
    ws.dirty.assign(hidden_layers, 1);
    bool moved = false;
    for (int sweep = 0; sweep < max_sweeps; ++sweep) {
        bool changed = false;
        int offset = 0;
        for (int l = 0; l < hidden_layers; offset += arch.dims[l + 1], ++l) {
            if (!ws.dirty[l]) continue;
            ws.dirty[l] = 0;
            const int d = arch.dims[l + 1];
            const int features = arch.dims[l] + 1 + arch.dims[l + 2];
            unit_features(arch, target, l, ws.target_features.data());
            unit_features(arch, row, l, ws.model_features.data());
            // score (d, d) = target_features^T @ model_features, in row blocks across threads
            constexpr int kRows = 64;
            parallel_for((d + kRows - 1) / kRows, n_threads, [&](long block, int) {
                GemmArgs g;
                g.m = std::min(kRows, d - static_cast<int>(block) * kRows);
                g.n = d;
                g.k = features;
                g.a = ws.target_features.data() + block * kRows;
                g.a_rs = 1;
                g.a_ks = d;
                g.b = ws.model_features.data();
                g.ldb = d;
                g.c = ws.score.data() + static_cast<std::size_t>(block) * kRows * d;
                g.ldc = d;
                gemm(Epilogue::Store, g);
            });
            int* q = ws.q.data();
            double* layer_prices = prices ? prices + offset : nullptr;
            const double best = max_assignment(ws.score.data(), d, q, ws.lap, layer_prices, warm || sweep > 0);
            double identity = 0.0;
            for (int i = 0; i < d; ++i) identity += ws.score.data()[static_cast<std::size_t>(i) * d + i];
            // Only a strictly better matching counts: ties must not make units swap forever.
            if (best > identity + 1e-9 * (1.0 + (identity < 0 ? -identity : identity))) {
                permute_layer(arch, row, l, q, ws.scratch.data());
                int* p = perm + offset;
                ws.composed.resize(d);
                for (int i = 0; i < d; ++i) ws.composed[i] = p[q[i]];
                std::memcpy(p, ws.composed.data(), sizeof(int) * d);
                if (layer_prices) {  // the prices follow their columns to the new positions
                    ws.moved_prices.assign(layer_prices, layer_prices + d);
                    for (int i = 0; i < d; ++i) layer_prices[i] = ws.moved_prices[q[i]];
                }
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
    // Each model's assignment prices carry over from one round to the next (warm starts).
    std::vector<double> prices(static_cast<std::size_t>(n_models) * H, 0.0);
    parallel_for(n_models, threads, [&](long m, int t) {
        if (m != reference)
            align_to(arch, ref, params + m * P, perms + m * H, kSweeps, space(t), 1, prices.data() + m * H, false);
    });

    std::vector<double> sum(P, 0.0);
    for (int m = 0; m < n_models; ++m) {
        const float* row = params + static_cast<std::size_t>(m) * P;
        for (std::size_t j = 0; j < P; ++j) sum[j] += row[j];
    }
    std::vector<float> target(P), before(P);
    AlignWorkspace& ws = space(0);
    const double inv = 1.0 / (n_models - 1);
    int rounds = 0;
    while (rounds < max_rounds) {
        ++rounds;
        bool any = false;
        for (int m = 0; m < n_models; ++m) {
            if (m == reference) continue;
            float* row = params + static_cast<std::size_t>(m) * P;
            for (std::size_t j = 0; j < P; ++j) target[j] = static_cast<float>((sum[j] - row[j]) * inv);
            std::copy(row, row + P, before.begin());
            if (align_to(arch, target.data(), row, perms + static_cast<std::size_t>(m) * H, kSweeps, ws, n_threads,
                         prices.data() + static_cast<std::size_t>(m) * H, true)) {
                for (std::size_t j = 0; j < P; ++j) sum[j] += double(row[j]) - double(before[j]);
                any = true;
            }
        }
        if (!any) break;
    }
    return rounds;
}

}  // namespace segfast
