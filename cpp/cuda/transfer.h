// Copies between host memory that numpy owns (pageable) and the device. Large copies go
// through two pinned staging buffers: the CPU threads fill one while the copy engine drains
// the other, so a copy runs near the link's speed instead of the driver's pageable path
// (measured in bench/README.md). Small ones, and every copy when SEGFAST_CUDA_PINNED=0, are
// plain cudaMemcpy calls. Both are ordered with the kernels on the default stream and return
// when the copy is complete.
#pragma once
#include <cstddef>

namespace segfast::cuda {

void copy_to_device(void* device, const void* host, std::size_t bytes);
void copy_to_host(void* host, const void* device, std::size_t bytes);

}  // namespace segfast::cuda
