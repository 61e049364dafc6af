// A 64-byte aligned float/int scratch buffer: whole cache lines, no split vector loads.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace segfast {

template <class T>
class Buffer {
   public:
    Buffer() = default;
    explicit Buffer(std::size_t n) { resize(n); }
    void resize(std::size_t n) {
        if (n <= size_) return;
        std::size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        data_.reset(static_cast<T*>(p));
        size_ = n;
    }
    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    std::size_t size() const { return size_; }

   private:
    struct Free {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, Free> data_;
    std::size_t size_ = 0;
};

}  // namespace segfast
