// Writes small GGUF v3 files in memory (F32 or pre-encoded tensors, scalar/string metadata), so tests can
// build models of any architecture and shape without shipping files.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kvserve::test {

class GgufBuilder {
 public:
  void kv_u32(const std::string& key, uint32_t v) { kv(key, 4, &v, 4); }
  void kv_f32(const std::string& key, float v) { kv(key, 6, &v, 4); }
  void kv_str(const std::string& key, const std::string& v) {
    put_str(meta_, key);
    put<uint32_t>(meta_, 8);
    put_str(meta_, v);
    ++n_kv_;
  }
  void kv_bool(const std::string& key, bool v) {
    const uint8_t b = v;
    kv(key, 7, &b, 1);
  }
  // shape in ggml order (innermost first); data row-major over the reversed shape.
  void tensor_f32(const std::string& name, const std::vector<int64_t>& shape,
                  const std::vector<float>& data) {
    Tensor t{name, shape, std::vector<uint8_t>(data.size() * 4)};
    std::memcpy(t.bytes.data(), data.data(), t.bytes.size());
    tensors_.push_back(std::move(t));
  }
  // A tensor already encoded as ggml type `type` (its GGUF type id), e.g. quantized blocks.
  void tensor_raw(const std::string& name, const std::vector<int64_t>& shape, uint32_t type,
                  std::vector<uint8_t> bytes) {
    tensors_.push_back(Tensor{name, shape, std::move(bytes), type});
  }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> out;
    put<uint32_t>(out, 0x46554747);  // "GGUF"
    put<uint32_t>(out, 3);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, n_kv_);
    out.insert(out.end(), meta_.begin(), meta_.end());
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      put_str(out, t.name);
      put<uint32_t>(out, uint32_t(t.shape.size()));
      for (int64_t d : t.shape) put<uint64_t>(out, uint64_t(d));
      put<uint32_t>(out, t.type);
      put<uint64_t>(out, offset);
      offset += align(t.bytes.size());
    }
    out.resize(align(out.size()), 0);
    for (const Tensor& t : tensors_) {
      out.insert(out.end(), t.bytes.begin(), t.bytes.end());
      out.resize(align(out.size()), 0);
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    uint32_t type = 0;  // F32
  };
  static size_t align(size_t n) { return (n + 31) / 32 * 32; }
  template <class T>
  static void put(std::vector<uint8_t>& out, T v) {
    // resize + memcpy: GCC 12 misreads insert() of a few bytes into an empty vector as an
    // overflow (-Wstringop-overflow).
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
  }
  static void put_str(std::vector<uint8_t>& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  void kv(const std::string& key, uint32_t type, const void* v, size_t n) {
    put_str(meta_, key);
    put<uint32_t>(meta_, type);
    const auto* p = static_cast<const uint8_t*>(v);
    meta_.insert(meta_.end(), p, p + n);
    ++n_kv_;
  }

  std::vector<uint8_t> meta_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace kvserve::test
