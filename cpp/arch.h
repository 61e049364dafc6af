// The architecture of one MLP and where each layer lives inside a model's parameter row.
// A stack of N models is one (N, n_params) float32 array; row i is model i, laid out as
// W0 (d0, d1), b0 (d1), W1 (d1, d2), b1 (d2), ... (weights row-major, input-major).
#pragma once
#include <cstddef>
#include <vector>

#include "check.h"

namespace segfast {

struct Arch {
    std::vector<int> dims;           // (L+1,) layer widths, dims[0] = features, dims[L] = classes
    std::vector<std::size_t> w_off;  // (L,) offset of W_l in a parameter row
    std::vector<std::size_t> b_off;  // (L,) offset of b_l in a parameter row
    std::size_t n_params = 0;

    // More parameters than any machine holds (2^48 floats: 1 PiB) is a forged or mistyped
    // architecture; the bound also keeps every offset and count far from overflowing.
    static constexpr std::size_t kMaxParams = std::size_t(1) << 48;

    explicit Arch(const std::vector<int>& d) : dims(d) {
        SEGFAST_REQUIRE(dims.size() >= 2, "an MLP needs at least an input and an output width");
        for (int w : dims) SEGFAST_REQUIRE(w >= 1, "layer widths must be >= 1");
        for (std::size_t l = 0; l + 1 < dims.size(); ++l) {
            // Each term is below 2^62 (two ints), and the running total stays below 2^48: no wrap.
            const std::size_t layer = static_cast<std::size_t>(dims[l]) * dims[l + 1] + dims[l + 1];
            SEGFAST_REQUIRE(layer <= kMaxParams - n_params,
                            "these layer widths give more than 2^48 parameters per model");
            w_off.push_back(n_params);
            n_params += static_cast<std::size_t>(dims[l]) * dims[l + 1];
            b_off.push_back(n_params);
            n_params += static_cast<std::size_t>(dims[l + 1]);
        }
    }
    int n_layers() const { return static_cast<int>(dims.size()) - 1; }
    int n_in() const { return dims.front(); }
    int n_out() const { return dims.back(); }
    int widest() const {
        int w = 0;
        for (int d : dims) w = d > w ? d : w;
        return w;
    }
    // Multiply-adds of one forward pass of one row.
    double macs_per_row() const {
        double m = 0;
        for (std::size_t l = 0; l + 1 < dims.size(); ++l) m += double(dims[l]) * dims[l + 1];
        return m;
    }
};

}  // namespace segfast
