// A large zero-initialised buffer whose pages are only backed by memory once touched
// (anonymous mmap). Sizing a KV pool to a budget of gigabytes therefore costs nothing
// until sequences actually fill it, unlike std::vector, which writes every byte at start.
#pragma once

#include <cstddef>

namespace kvserve {

class ZeroedBuffer {
 public:
  ZeroedBuffer() = default;
  explicit ZeroedBuffer(size_t bytes);  // aborts with a message if the mapping fails
  ~ZeroedBuffer();
  ZeroedBuffer(ZeroedBuffer&& other) noexcept;
  ZeroedBuffer& operator=(ZeroedBuffer&& other) noexcept;
  ZeroedBuffer(const ZeroedBuffer&) = delete;
  ZeroedBuffer& operator=(const ZeroedBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kvserve
