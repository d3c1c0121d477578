// Device memory arenas: one cudaMalloc per arena at load time, bump allocation inside it, reset by
// moving the pointer back. The engine's hot loop never calls cudaMalloc/cudaFree; an arena that
// runs out throws fathom::Error naming the sizes (the load-time plan under-counted: a bug).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.cuh"
#include "fathom/error.h"

namespace fathom::cuda {

// Rounds n up to a multiple of a (a power of two).
inline size_t align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

class DeviceArena {
 public:
  static constexpr size_t kAlign = 256;  // cudaMalloc's own alignment; enough for 16-byte vectors

  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // One cudaMalloc of `bytes` (rounded up to kAlign). On failure throws fathom::Error saying
  // what the arena is for, how much it needed and how much the device had free.
  void init(size_t bytes, const std::string& what);
  void release();

  // Bump-allocates `bytes` aligned to kAlign. Throws when the arena is full.
  void* alloc(size_t bytes, const char* what);
  template <typename T>
  T* alloc_n(size_t n, const char* what) {
    return static_cast<T*>(alloc(n * sizeof(T), what));
  }
  // Pointer moves back to `mark` (a value of used()); memory is not cleared.
  void reset(size_t mark = 0);

  void* base() const { return base_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  const std::string& name() const { return name_; }

 private:
  void* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  std::string name_;
};

// A size planner that mirrors DeviceArena::alloc's rounding, so the load-time plan and the real
// allocations agree byte for byte.
struct ArenaPlan {
  size_t bytes = 0;
  size_t add(size_t n) {
    bytes += align_up(n == 0 ? 1 : n, DeviceArena::kAlign);  // alloc(0) still takes one unit
    return bytes;
  }
};

// A pinned host buffer (cudaMallocHost), freed in the destructor.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void init(size_t bytes, const char* what);
  void release();
  void* data() const { return ptr_; }
  size_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// "1.23 GiB" style.
std::string format_bytes(size_t bytes);

}  // namespace fathom::cuda
