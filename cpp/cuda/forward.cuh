// The forward pass of every model at once, one batched product per layer: training's per-layer
// path (prediction has dense_forward.cuh).
#pragma once
#include <vector>

#include "../arch.h"
#include "small_rows.cuh"

namespace segfast::cuda {

// out[l] (model m at out[l] + m * out_stride[l]) receives layer l's output for `rows` rows,
// row-major with width dims[l+1]; ReLU on every layer but the last. Model m's input rows are
// at x + m * x_stride (x_stride 0: every model reads the same rows) and its parameters at
// params + m * params_stride (0: every model starts from one broadcast row).
inline void forward_all(const Arch& arch, const float* params, long long params_stride, const float* x,
                        long long x_stride, int n_models, int rows, const int* skip, const std::vector<float*>& out,
                        const std::vector<long long>& out_stride) {
    const int L = arch.n_layers();
    const float* in = x;
    long long in_stride = x_stride;
    for (int l = 0; l < L; ++l) {
        const int d_in = arch.dims[l], d_out = arch.dims[l + 1];
        Operand a{in, in_stride, d_in, 1, -1, d_in};                 // (rows, d_in) with a column of ones for the bias
        Operand b{params + arch.w_off[l], params_stride, d_out, 1};  // (d_in + 1, d_out): W then b
        product(n_models, rows, d_out, d_in + 1, a, b, skip, StoreActivation{out[l], out_stride[l], d_out, l + 1 < L});
        in = out[l];
        in_stride = out_stride[l];
    }
}

}  // namespace segfast::cuda
