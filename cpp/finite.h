// Whether an array holds only finite floats: the input check every entry point runs on X.
// Fused and threaded so that checking a 60,000 x 784 data set costs milliseconds and no
// temporary (numpy's isfinite(X).all() allocates a boolean copy of X first).
#pragma once
#include <cstddef>

namespace segfast {

// Whether x[0..n) holds only finite floats (one thread, vectorised).
bool all_finite(const float* x, std::size_t n);

// Index of the first non-finite value of x[0..n), or -1 when all are finite.
std::ptrdiff_t first_non_finite(const float* x, std::size_t n, int n_threads);

}  // namespace segfast
