// The shifted exponentials behind softmax, log-softmax and cross-entropy, written once for the
// CPU (mlp.cpp, combine.cpp) and the GPU (cuda/trainer.cu, predict.cu, resident_epoch.cu): the
// same operations in the same order wherever a row of logits is turned into probabilities.
// The largest logit is subtracted first, so that no exp() overflows.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define SEGFAST_HOST_DEVICE __host__ __device__
#else
#define SEGFAST_HOST_DEVICE
#endif

namespace segfast {

SEGFAST_HOST_DEVICE inline float exp_of(float x) {
#if defined(__CUDA_ARCH__)
    return expf(x);
#else
    return std::exp(x);
#endif
}

SEGFAST_HOST_DEVICE inline double exp_of(double x) {
#if defined(__CUDA_ARCH__)
    return exp(x);
#else
    return std::exp(x);
#endif
}

// The largest of z[0, classes).
SEGFAST_HOST_DEVICE inline float max_logit(const float* z, int classes) {
    float top = z[0];
    for (int c = 1; c < classes; ++c) top = z[c] > top ? z[c] : top;
    return top;
}

// The index of the first largest of z[0, classes): the predicted class.
SEGFAST_HOST_DEVICE inline int argmax_logit(const float* z, int classes) {
    int best = 0;
    for (int c = 1; c < classes; ++c) best = z[c] > z[best] ? c : best;
    return best;
}

// sum over c of exp(z[c] - top) in T (float or double), each term also written to e[c] when e is
// given (e may be z itself). With top the largest logit: softmax = e / sum, log-sum-exp =
// top + log(sum).
template <class T>
SEGFAST_HOST_DEVICE inline T sum_shifted_exp(const float* z, int classes, T top, T* e = nullptr) {
    T total = 0;
    for (int c = 0; c < classes; ++c) {
        const T term = exp_of(static_cast<T>(z[c]) - top);
        if (e) e[c] = term;
        total += term;
    }
    return total;
}

}  // namespace segfast
