// Device arenas and pinned host buffers. See arena.h.
#include "cuda/arena.h"

#include <cstdio>

namespace fathom::cuda {

std::string format_bytes(size_t bytes) {
  char buf[64];
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  return buf;
}

DeviceArena::~DeviceArena() { release(); }

void DeviceArena::init(size_t bytes, const std::string& what) {
  release();
  name_ = what;
  bytes = align_up(bytes == 0 ? kAlign : bytes, kAlign);
  const cudaError_t err = cudaMalloc(&base_, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error so the context stays usable
    base_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("out of GPU memory allocating the ", what, ": needed ", format_bytes(bytes), " (",
         bytes, " bytes), ", format_bytes(free_b), " free of ", format_bytes(total_b));
  }
  capacity_ = bytes;
  used_ = 0;
}

void DeviceArena::release() {
  if (base_) cudaFree(base_);
  base_ = nullptr;
  capacity_ = used_ = 0;
}

void* DeviceArena::alloc(size_t bytes, const char* what) {
  const size_t n = align_up(bytes == 0 ? 1 : bytes, kAlign);
  FATHOM_CHECK(base_ != nullptr, "device arena '", name_, "' used before init (allocating ", what,
               ")");
  FATHOM_CHECK(used_ + n <= capacity_, "device arena '", name_, "' is full: ", what, " needs ",
               n, " bytes, ", capacity_ - used_, " of ", capacity_, " left");
  void* p = static_cast<char*>(base_) + used_;
  used_ += n;
  return p;
}

void DeviceArena::reset(size_t mark) {
  FATHOM_CHECK(mark <= used_, "device arena '", name_, "': reset mark ", mark, " beyond used ",
               used_);
  used_ = mark;
}

PinnedBuffer::~PinnedBuffer() { release(); }

void PinnedBuffer::init(size_t bytes, const char* what) {
  release();
  const cudaError_t err = cudaMallocHost(&ptr_, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    ptr_ = nullptr;
    fail("could not allocate ", format_bytes(bytes), " of pinned host memory for ", what, ": ",
         cudaGetErrorString(err));
  }
  size_ = bytes;
}

void PinnedBuffer::release() {
  if (ptr_) cudaFreeHost(ptr_);
  ptr_ = nullptr;
  size_ = 0;
}

}  // namespace fathom::cuda
