#include "core/zeroed_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace kvserve {

ZeroedBuffer::ZeroedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  void* p =
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "kvserve: cannot reserve %zu bytes: %s\n", bytes, std::strerror(errno));
    std::abort();
  }
  // Transparent huge pages where the system allows them on request: a KV pool is read in
  // blocks scattered over it, and with 4 KiB pages every block of every head can be a TLB
  // miss. Still backed only as touched, 2 MiB at a time. Advice only: a kernel without THP
  // (or with it off) ignores it.
#ifdef MADV_HUGEPAGE
  if (bytes >= (size_t(4) << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  data_ = p;
}

ZeroedBuffer::~ZeroedBuffer() {
  if (data_ != nullptr) ::munmap(data_, bytes_);
}

ZeroedBuffer::ZeroedBuffer(ZeroedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

ZeroedBuffer& ZeroedBuffer::operator=(ZeroedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, bytes_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace kvserve
