#include "finite.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "threads.h"

namespace segfast {

namespace {

// A float is NaN or inf exactly when its exponent bits are all ones; counting those with
// integer ops lets the compiler vectorise the loop.
bool chunk_finite(const float* x, std::size_t n) {
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bad |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

}  // namespace

bool all_finite(const float* x, std::size_t n) { return chunk_finite(x, n); }

std::ptrdiff_t first_non_finite(const float* x, std::size_t n, int n_threads) {
    constexpr std::size_t kChunk = 1 << 16;
    const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
    std::vector<unsigned char> ok(static_cast<std::size_t>(chunks), 1);
    parallel_for(chunks, n_threads, [&](long c, int) {
        const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
        ok[c] = chunk_finite(x + begin, (n - begin) < kChunk ? n - begin : kChunk);
    });
    for (long c = 0; c < chunks; ++c) {
        if (ok[c]) continue;
        const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
        for (std::size_t i = begin; i < n && i < begin + kChunk; ++i) {
            std::uint32_t bits;
            std::memcpy(&bits, x + i, sizeof bits);
            if ((bits & 0x7f800000u) == 0x7f800000u) return static_cast<std::ptrdiff_t>(i);
        }
    }
    return -1;
}

}  // namespace segfast
