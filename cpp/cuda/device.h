// The CUDA path as the rest of the core sees it: plain C++ types only, so that bindings.cpp
// compiles with the host compiler. Everything here exists only in builds with SEGFAST_WITH_CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../train.h"

namespace segfast::cuda {

// Empty when a GPU can be used; otherwise why not, in words, for the Python error message.
std::string unavailable_reason();
std::string device_name();
std::size_t memory_in_use();  // total minus free, as cudaMemGetInfo reports them

struct EpochArgs {
    const std::int64_t* order = nullptr;    // segment i is order[offsets[i]:offsets[i+1]] (host)
    const std::int64_t* offsets = nullptr;  // (n_models + 1,)
    const std::uint8_t* active = nullptr;   // (n_models,)
    const std::int64_t* epoch = nullptr;    // (n_models,) keys each model's random stream
    const float* start_row = nullptr;       // (n_params,) or null: the broadcast of a round
    const double* merge_weights = nullptr;  // (n_models,) or null: the fused merge
    // As on the CPU; n_threads serves the shuffles, which run on the host with the CPU's streams.
    EpochConfig config;
};

struct EpochOutputs {
    double* mean_loss = nullptr;       // (n_models,)
    std::uint8_t* diverged = nullptr;  // (n_models,)
    double* merged = nullptr;          // (n_params,) when merge_weights is given
};

// Training data and models resident on the GPU. X and y are copied once; the parameters stay
// on the device from epoch to epoch (and from round to round of a federated run) and come back
// only when asked for.
class Trainer {
   public:
    Trainer(const std::vector<int>& dims, const float* x, std::int64_t n_rows, const std::int64_t* y);
    ~Trainer();
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    void set_models(const float* params, int n_models);  // upload; velocity restarts at zero
    void resize_models(int n_models);                    // rows left as they are (a broadcast follows)
    void get_models(float* params) const;                // download (n_models, n_params)
    int n_models() const;
    // The proximal term's anchor: a single row for every model, or (row == null) a copy of the
    // models' current parameters.
    void set_anchor(const float* row);
    void epoch(const EpochArgs& args, const EpochOutputs& out);

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Every model on the same rows. params (n_models, n_params) and x (n_rows, d0) on the host;
// out (n_models, n_rows, classes) gets probabilities, or log-probabilities with log = true.
void predict_proba(const std::vector<int>& dims, const float* params, int n_models, const float* x, std::int64_t n_rows,
                   float* out, bool log = false);
void evaluate(const std::vector<int>& dims, const float* params, int n_models, const float* x, std::int64_t n_rows,
              const std::int64_t* y, double* loss, double* accuracy);

}  // namespace segfast::cuda
