// Counter-based random streams: one independent stream per (seed, model, epoch), so a
// model's minibatches and flips do not depend on which thread trains it or in what order.
// SplitMix64 is tiny, passes BigCrush and is trivially the same on a GPU.
#pragma once
#include <cstdint>

namespace segfast {

inline std::uint64_t splitmix64_step(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

class Stream {
   public:
    Stream(std::uint64_t seed, std::uint64_t model, std::uint64_t epoch) : state_(seed) {
        // Each key part goes through a full mixing round so nearby keys give unrelated streams.
        state_ = splitmix64_step(state_) ^ model;
        state_ = splitmix64_step(state_) ^ epoch;
        state_ = splitmix64_step(state_);
    }
    std::uint64_t next() { return splitmix64_step(state_); }

    // Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).
    std::uint64_t below(std::uint64_t n) {
        unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
        std::uint64_t low = static_cast<std::uint64_t>(m);
        if (low < n) {
            const std::uint64_t threshold = (0 - n) % n;
            while (low < threshold) {
                m = static_cast<unsigned __int128>(next()) * n;
                low = static_cast<std::uint64_t>(m);
            }
        }
        return static_cast<std::uint64_t>(m >> 64);
    }

    // Fisher-Yates shuffle of idx[0..n) in place.
    template <class T>
    void shuffle(T* idx, std::int64_t n) {
        for (std::int64_t i = n - 1; i > 0; --i) {
            std::int64_t j = static_cast<std::int64_t>(below(static_cast<std::uint64_t>(i) + 1));
            T t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
    }

   private:
    std::uint64_t state_;
};

}  // namespace segfast
