// CUDA failures become C++ exceptions (pybind11 turns them into Python RuntimeErrors) that
// name the failing call and where it is; nothing here ever calls exit().
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include "transfer.h"

namespace segfast::cuda {

// The device has no room for an allocation: Python sees a MemoryError with this message.
struct DeviceMemoryError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(cudaError_t error, const char* call, const char* file, int line) {
    throw std::runtime_error(std::string("CUDA error in ") + call + " at " + file + ":" + std::to_string(line) + ": " +
                             cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")");
}

// Owns n elements of device memory.
template <class T>
class DeviceArray {
   public:
    DeviceArray() = default;
    explicit DeviceArray(std::size_t n) { resize(n); }
    ~DeviceArray() {
        if (ptr_) cudaFree(ptr_);
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& other) noexcept : ptr_(other.ptr_), size_(other.size_) {
        other.ptr_ = nullptr;
        other.size_ = 0;
    }
    DeviceArray& operator=(DeviceArray&& other) noexcept {
        std::swap(ptr_, other.ptr_);
        std::swap(size_, other.size_);
        return *this;
    }

    void resize(std::size_t n);
    void reserve(std::size_t n) {  // at least n elements; never shrinks
        if (n > size_) resize(n);
    }
    T* get() const { return ptr_; }
    std::size_t size() const { return size_; }
    void upload(const T* host, std::size_t n);
    void download(T* host, std::size_t n) const;

   private:
    T* ptr_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace segfast::cuda

#define SEGFAST_CUDA(call)                                                                                   \
    do {                                                                                                     \
        cudaError_t segfast_error_ = (call);                                                                 \
        if (segfast_error_ != cudaSuccess) ::segfast::cuda::fail(segfast_error_, #call, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: a bad launch configuration shows here; a fault inside the kernel
// shows at the next synchronising call, named by that call.
#define SEGFAST_CUDA_LAUNCHED(kernel) ::segfast::cuda::check_launch(kernel, __FILE__, __LINE__)

namespace segfast::cuda {

inline void check_launch(const char* kernel, const char* file, int line) {
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) fail(error, (std::string("launch of ") + kernel).c_str(), file, line);
}

template <class T>
void DeviceArray<T>::resize(std::size_t n) {
    if (n == size_) return;
    if (ptr_) SEGFAST_CUDA(cudaFree(ptr_));
    ptr_ = nullptr;
    size_ = 0;
    if (!n) return;
    const cudaError_t error = cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T));
    if (error == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        ptr_ = nullptr;
        std::size_t free = 0, total = 0;
        cudaMemGetInfo(&free, &total);
        throw DeviceMemoryError("the GPU is out of memory: " + std::to_string(n * sizeof(T) >> 20) +
                                " MiB more were needed, " + std::to_string(free >> 20) + " MiB of " +
                                std::to_string(total >> 20) + " MiB are free (fewer models a call, or the CPU)");
    }
    if (error != cudaSuccess) fail(error, "cudaMalloc", __FILE__, __LINE__);
    size_ = n;
}

template <class T>
void DeviceArray<T>::upload(const T* host, std::size_t n) {
    if (n > size_) resize(n);
    copy_to_device(ptr_, host, n * sizeof(T));
}

template <class T>
void DeviceArray<T>::download(T* host, std::size_t n) const {
    copy_to_host(host, ptr_, n * sizeof(T));
}

}  // namespace segfast::cuda
