// GGUF (v2/v3) reader: metadata of every value type, tensor infos, memory-mapped data.
// Every count, length, offset and dimension read from the file is validated against
// the file size before use; a hostile file yields an Error naming the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/result.h"
#include "gguf/ggml_type.h"

namespace kvserve {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are widened on read; arrays hold their elements.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  GgufType array_type = GgufType::UINT8;  // element type when type == ARRAY
  union {
    uint64_t u64;  // UINT8/16/32/64, BOOL
    int64_t i64;   // INT8/16/32/64
    double f64;    // FLOAT32/64
  };
  std::string str;               // STRING
  std::vector<GgufValue> array;  // ARRAY

  GgufValue() : u64(0) {}
  bool is_integer() const;
  bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  // Checked conversions: nullopt when the type does not fit.
  std::optional<int64_t> as_int() const;   // any integer type (UINT64 > INT64_MAX fails)
  std::optional<double> as_float() const;  // float or integer types
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the innermost (contiguous) dim
  uint64_t offset = 0;         // from the start of the data section
  size_t nbytes = 0;
  int64_t n_elements = 0;
  const uint8_t* data = nullptr;  // into the mapping (or buffer); valid while the file lives

  int64_t ne(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

class GgufFile {
 public:
  static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses a buffer the caller keeps alive (used by the fuzzer and tests).
  static Result<std::unique_ptr<GgufFile>> parse(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }
  const std::string& path() const { return path_; }

  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // Array of strings / numbers; nullopt if missing or of another element type.
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue, std::less<>> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  friend class GgufParser;
};

}  // namespace kvserve
