// Staged copies (transfer.h says why). Host code: compiled with the host compiler, so that the
// copies into and out of the staging buffers run on every core (OpenMP).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "../threads.h"
#include "cuda_check.h"
#include "transfer.h"

namespace segfast::cuda {

namespace {

constexpr std::size_t kStageBytes = std::size_t(32) << 20;  // per staging buffer
constexpr std::size_t kDirectBytes = std::size_t(8) << 20;  // below this, a plain copy

struct Staging {
    char* buffer[2] = {nullptr, nullptr};
    cudaEvent_t drained[2] = {nullptr, nullptr};  // the copy engine is done with buffer[i]
    bool ok = false;
    Staging() {
        ok = cudaMallocHost(reinterpret_cast<void**>(&buffer[0]), kStageBytes) == cudaSuccess &&
             cudaMallocHost(reinterpret_cast<void**>(&buffer[1]), kStageBytes) == cudaSuccess &&
             cudaEventCreateWithFlags(&drained[0], cudaEventDisableTiming) == cudaSuccess &&
             cudaEventCreateWithFlags(&drained[1], cudaEventDisableTiming) == cudaSuccess;
        if (!ok) cudaGetLastError();  // no pinned memory here: plain copies instead
    }
};

// Made on first use and never freed: pinned memory freed after the driver has shut down at
// exit would fail. One copy at a time uses it.
Staging* staging() {
    static Staging* s = new Staging();
    return s->ok ? s : nullptr;
}
std::mutex staging_lock;

bool staged(std::size_t bytes) {
    if (bytes < kDirectBytes) return false;
    const char* pinned = std::getenv("SEGFAST_CUDA_PINNED");
    return !(pinned && std::string(pinned) == "0");
}

// memcpy on every core: one core's copy is slower than the link.
void host_copy(char* dst, const char* src, std::size_t bytes) {
    constexpr std::size_t kPiece = std::size_t(1) << 20;
    const long pieces = static_cast<long>((bytes + kPiece - 1) / kPiece);
    parallel_for(pieces, resolve_threads(-1), [&](long p, int) {
        const std::size_t at = static_cast<std::size_t>(p) * kPiece;
        std::memcpy(dst + at, src + at, std::min(kPiece, bytes - at));
    });
}

}  // namespace

void copy_to_device(void* device, const void* host, std::size_t bytes) {
    Staging* s = staged(bytes) ? staging() : nullptr;
    if (!s) {
        if (bytes) SEGFAST_CUDA(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
        return;
    }
    std::lock_guard<std::mutex> guard(staging_lock);
    char* dst = static_cast<char*>(device);
    const char* src = static_cast<const char*>(host);
    for (std::size_t at = 0, i = 0; at < bytes; at += kStageBytes, ++i) {
        const std::size_t n = std::min(kStageBytes, bytes - at), b = i % 2;
        SEGFAST_CUDA(cudaEventSynchronize(s->drained[b]));
        host_copy(s->buffer[b], src + at, n);
        SEGFAST_CUDA(cudaMemcpyAsync(dst + at, s->buffer[b], n, cudaMemcpyHostToDevice, 0));
        SEGFAST_CUDA(cudaEventRecord(s->drained[b], 0));
    }
    SEGFAST_CUDA(cudaStreamSynchronize(0));
}

void copy_to_host(void* host, const void* device, std::size_t bytes) {
    Staging* s = staged(bytes) ? staging() : nullptr;
    if (!s) {
        if (bytes) SEGFAST_CUDA(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
        return;
    }
    std::lock_guard<std::mutex> guard(staging_lock);
    char* dst = static_cast<char*>(host);
    const char* src = static_cast<const char*>(device);
    const std::size_t chunks = (bytes + kStageBytes - 1) / kStageBytes;
    // Chunk i lands in buffer i % 2 while the CPU empties chunk i - 1 from the other.
    for (std::size_t i = 0; i <= chunks; ++i) {
        if (i < chunks) {
            const std::size_t at = i * kStageBytes;
            SEGFAST_CUDA(cudaMemcpyAsync(s->buffer[i % 2], src + at, std::min(kStageBytes, bytes - at),
                                         cudaMemcpyDeviceToHost, 0));
            SEGFAST_CUDA(cudaEventRecord(s->drained[i % 2], 0));
        }
        if (i > 0) {
            const std::size_t at = (i - 1) * kStageBytes;
            SEGFAST_CUDA(cudaEventSynchronize(s->drained[(i - 1) % 2]));
            host_copy(dst + at, s->buffer[(i - 1) % 2], std::min(kStageBytes, bytes - at));
        }
    }
}

}  // namespace segfast::cuda
