#include "reduce.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "threads.h"

namespace segfast {

namespace {

constexpr std::size_t kChunk = 4096;  // columns per task: N x 16 KB of a stack, cache sized

template <class Body>
void for_chunks(std::size_t n_params, int n_threads, Body&& body) {
    const long chunks = static_cast<long>((n_params + kChunk - 1) / kChunk);
    parallel_for(chunks, n_threads, [&](long c, int) {
        const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
        body(begin, std::min(n_params, begin + kChunk));
    });
}

// Sorts each column of a chunk and hands body(sorted values, column) the N values.
template <class Body>
void for_sorted_columns(const float* params, int n_models, std::size_t n_params, int n_threads, Body&& body) {
    for_chunks(n_params, n_threads, [&](std::size_t begin, std::size_t end) {
        std::vector<float> column(static_cast<std::size_t>(n_models));
        for (std::size_t j = begin; j < end; ++j) {
            for (int i = 0; i < n_models; ++i) column[i] = params[static_cast<std::size_t>(i) * n_params + j];
            std::sort(column.begin(), column.end());
            body(column.data(), j);
        }
    });
}

}  // namespace

void weighted_sum(const float* params, int n_models, std::size_t n_params, const double* weights, float* out,
                  int n_threads) {
    for_chunks(n_params, n_threads, [&](std::size_t begin, std::size_t end) {
        std::vector<double> acc(end - begin, 0.0);
        for (int i = 0; i < n_models; ++i) {
            const float* row = params + static_cast<std::size_t>(i) * n_params;
            const double w = weights[i];
            if (w == 0.0) continue;
            for (std::size_t j = begin; j < end; ++j) acc[j - begin] += w * row[j];
        }
        for (std::size_t j = begin; j < end; ++j) out[j] = static_cast<float>(acc[j - begin]);
    });
}

void coordinate_median(const float* params, int n_models, std::size_t n_params, float* out, int n_threads) {
    for_sorted_columns(params, n_models, n_params, n_threads, [&](const float* v, std::size_t j) {
        const int h = n_models / 2;
        out[j] = n_models % 2 ? v[h] : static_cast<float>(0.5 * (double(v[h - 1]) + double(v[h])));
    });
}

void trimmed_mean(const float* params, int n_models, std::size_t n_params, int trim, float* out, int n_threads) {
    for_sorted_columns(params, n_models, n_params, n_threads, [&](const float* v, std::size_t j) {
        double total = 0.0;
        for (int i = trim; i < n_models - trim; ++i) total += v[i];
        out[j] = static_cast<float>(total / (n_models - 2 * trim));
    });
}

void clipped_update_sum(const float* params, int n_models, std::size_t n_params, const float* global, double clip,
                        double* out, double* norms, int n_threads) {
    std::vector<double> scale(static_cast<std::size_t>(n_models));
    parallel_for(n_models, n_threads, [&](long i, int) {
        const float* row = params + static_cast<std::size_t>(i) * n_params;
        double total = 0.0;
        for (std::size_t j = 0; j < n_params; ++j) {
            const double d = static_cast<double>(row[j]) - global[j];
            total += d * d;
        }
        norms[i] = std::sqrt(total);
        // a non-finite update (a diverged model) adds nothing: scaling it would spread NaN
        scale[i] = !std::isfinite(norms[i]) ? 0.0 : (norms[i] > clip ? clip / norms[i] : 1.0);
    });
    for_chunks(n_params, n_threads, [&](std::size_t begin, std::size_t end) {
        for (std::size_t j = begin; j < end; ++j) out[j] = 0.0;
        for (int i = 0; i < n_models; ++i) {
            if (scale[i] == 0.0) continue;
            const float* row = params + static_cast<std::size_t>(i) * n_params;
            for (std::size_t j = begin; j < end; ++j) out[j] += scale[i] * (static_cast<double>(row[j]) - global[j]);
        }
    });
}

}  // namespace segfast
