#include "gguf/gguf_file.h"

#include <cstdint>
#include <cstring>
#include <limits>

namespace kvserve {

namespace {
constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;
// Real files hold a few million array elements at most (vocabularies, merges); each
// costs ~100 bytes in memory, so this caps a hostile file's metadata at ~3 GB.
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 25;
}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64: return true;
    default: return false;
  }
}

std::optional<int64_t> GgufValue::as_int() const {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::UINT16:
    case GgufType::UINT32: return int64_t(u64);
    case GgufType::UINT64:
      if (u64 > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return int64_t(u64);
    case GgufType::INT8:
    case GgufType::INT16:
    case GgufType::INT32:
    case GgufType::INT64: return i64;
    default: return std::nullopt;
  }
}

std::optional<double> GgufValue::as_float() const {
  if (is_float()) return f64;
  if (type == GgufType::UINT64) return double(u64);
  if (auto i = as_int()) return double(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type == GgufType::BOOL) return u64 != 0;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const {
  return type == GgufType::STRING ? &str : nullptr;
}

// Bounds-checked little-endian cursor over the file. Every read names the field it
// reads so that errors say what was wrong.
class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size) : p_(data), size_(size) {}

  Status parse(GgufFile& f);

 private:
  Status need(uint64_t n, const std::string& field) {
    if (n > size_ - pos_)
      return Error{"truncated GGUF: " + field + " needs " + std::to_string(n) + " bytes at offset " +
                   std::to_string(pos_) + " but the file has " + std::to_string(size_ - pos_) + " left"};
    return ok_status();
  }
  template <class T>
  Result<T> read(const std::string& field) {
    if (auto s = need(sizeof(T), field); !s) return s.error();
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  Result<std::string> read_string(const std::string& field) {
    auto len = read<uint64_t>(field + " length");
    if (!len) return len.error();
    if (*len > kMaxStringBytes) return Error{field + " length " + std::to_string(*len) + " is too large"};
    if (auto s = need(*len, field); !s) return s.error();
    std::string out(reinterpret_cast<const char*>(p_ + pos_), size_t(*len));
    pos_ += *len;
    return out;
  }
  Status read_value(GgufType type, GgufValue& v, const std::string& field, int depth);

  // Smallest encoding of a value of type t: a string is at least its length field, an
  // array its element type and count.
  static uint64_t min_value_bytes(GgufType t) {
    switch (t) {
      case GgufType::UINT8:
      case GgufType::INT8:
      case GgufType::BOOL: return 1;
      case GgufType::UINT16:
      case GgufType::INT16: return 2;
      case GgufType::UINT32:
      case GgufType::INT32:
      case GgufType::FLOAT32: return 4;
      case GgufType::STRING:
      case GgufType::UINT64:
      case GgufType::INT64:
      case GgufType::FLOAT64: return 8;
      case GgufType::ARRAY: return 12;
    }
    return 1;
  }

  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t array_elements_ = 0;  // over all metadata arrays, nested ones included
};

Status GgufParser::read_value(GgufType type, GgufValue& v, const std::string& field, int depth) {
  v.type = type;
  switch (type) {
    case GgufType::UINT8: {
      auto r = read<uint8_t>(field);
      if (!r) return r.error();
      v.u64 = *r;
      break;
    }
    case GgufType::INT8: {
      auto r = read<int8_t>(field);
      if (!r) return r.error();
      v.i64 = *r;
      break;
    }
    case GgufType::UINT16: {
      auto r = read<uint16_t>(field);
      if (!r) return r.error();
      v.u64 = *r;
      break;
    }
    case GgufType::INT16: {
      auto r = read<int16_t>(field);
      if (!r) return r.error();
      v.i64 = *r;
      break;
    }
    case GgufType::UINT32: {
      auto r = read<uint32_t>(field);
      if (!r) return r.error();
      v.u64 = *r;
      break;
    }
    case GgufType::INT32: {
      auto r = read<int32_t>(field);
      if (!r) return r.error();
      v.i64 = *r;
      break;
    }
    case GgufType::UINT64: {
      auto r = read<uint64_t>(field);
      if (!r) return r.error();
      v.u64 = *r;
      break;
    }
    case GgufType::INT64: {
      auto r = read<int64_t>(field);
      if (!r) return r.error();
      v.i64 = *r;
      break;
    }
    case GgufType::FLOAT32: {
      auto r = read<float>(field);
      if (!r) return r.error();
      v.f64 = *r;
      break;
    }
    case GgufType::FLOAT64: {
      auto r = read<double>(field);
      if (!r) return r.error();
      v.f64 = *r;
      break;
    }
    case GgufType::BOOL: {
      auto r = read<uint8_t>(field);
      if (!r) return r.error();
      if (*r > 1) return Error{field + ": bool value " + std::to_string(*r) + " is not 0 or 1"};
      v.u64 = *r;
      break;
    }
    case GgufType::STRING: {
      auto r = read_string(field);
      if (!r) return r.error();
      v.str = std::move(*r);
      break;
    }
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        return Error{field + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth)};
      auto et = read<uint32_t>(field + " element type");
      if (!et) return et.error();
      if (*et > uint32_t(GgufType::FLOAT64))
        return Error{field + ": unknown array element type " + std::to_string(*et)};
      auto n = read<uint64_t>(field + " element count");
      if (!n) return n.error();
      // Every element takes at least min_value_bytes, so a count beyond the bytes left
      // is a lie; the total cap bounds memory (each element becomes a GgufValue).
      const uint64_t min_bytes = min_value_bytes(GgufType(*et));
      if (*n > (size_ - pos_) / min_bytes)
        return Error{field + ": element count " + std::to_string(*n) + " exceeds the file size"};
      if (*n > kMaxArrayElements - array_elements_)
        return Error{field + ": metadata arrays hold more than " + std::to_string(kMaxArrayElements) +
                     " elements in total"};
      array_elements_ += *n;
      v.array_type = GgufType(*et);
      v.array.resize(size_t(*n));
      for (uint64_t i = 0; i < *n; ++i) {
        if (auto s = read_value(v.array_type, v.array[i], field, depth + 1); !s) return s;
      }
      break;
    }
    default: return Error{field + ": unknown value type " + std::to_string(uint32_t(type))};
  }
  return ok_status();
}

Status GgufParser::parse(GgufFile& f) {
  auto magic = read<uint32_t>("magic");
  if (!magic) return magic.error();
  if (*magic != kMagic) return Error{"not a GGUF file (bad magic)"};
  auto version = read<uint32_t>("version");
  if (!version) return version.error();
  if (*version == 1) return Error{"GGUF version 1 is not supported (convert the file to v3)"};
  if ((*version & 0xffff) == 0 && *version != 0)
    return Error{"big-endian GGUF files are not supported (version field " + std::to_string(*version) + ")"};
  if (*version != 2 && *version != 3) return Error{"unsupported GGUF version " + std::to_string(*version)};
  f.version_ = *version;
  auto n_tensors = read<uint64_t>("tensor_count");
  if (!n_tensors) return n_tensors.error();
  auto n_kv = read<uint64_t>("metadata_kv_count");
  if (!n_kv) return n_kv.error();
  // A tensor info takes at least 8+4+8+4+8 bytes, a key-value at least 8+4+1.
  if (*n_tensors > (size_ - pos_) / 32)
    return Error{"tensor_count " + std::to_string(*n_tensors) + " exceeds the file size"};
  if (*n_kv > (size_ - pos_) / 13)
    return Error{"metadata_kv_count " + std::to_string(*n_kv) + " exceeds the file size"};

  for (uint64_t i = 0; i < *n_kv; ++i) {
    const std::string where = "metadata[" + std::to_string(i) + "]";
    auto key = read_string(where + " key");
    if (!key) return key.error();
    auto type = read<uint32_t>("metadata '" + *key + "' type");
    if (!type) return type.error();
    if (*type > uint32_t(GgufType::FLOAT64))
      return Error{"metadata '" + *key + "': unknown value type " + std::to_string(*type)};
    GgufValue v;
    if (auto s = read_value(GgufType(*type), v, "metadata '" + *key + "'", 0); !s) return s;
    if (f.kv_.count(*key)) return Error{"metadata key '" + *key + "' appears twice"};
    f.kv_.emplace(std::move(*key), std::move(v));
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    auto al = a->as_int();
    if (!al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (1 << 20))
      return Error{"general.alignment must be a power of two (got " +
                   (al ? std::to_string(*al) : std::string("a non-integer")) + ")"};
    f.alignment_ = uint64_t(*al);
  }

  f.tensors_.resize(size_t(*n_tensors));
  for (uint64_t i = 0; i < *n_tensors; ++i) {
    GgufTensor& t = f.tensors_[i];
    auto name = read_string("tensor[" + std::to_string(i) + "] name");
    if (!name) return name.error();
    t.name = std::move(*name);
    const std::string where = "tensor '" + t.name + "'";
    auto n_dims = read<uint32_t>(where + " n_dims");
    if (!n_dims) return n_dims.error();
    if (*n_dims == 0 || *n_dims > kMaxDims)
      return Error{where + ": n_dims " + std::to_string(*n_dims) + " is not in 1..4"};
    t.shape.resize(*n_dims);
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < *n_dims; ++d) {
      auto ne = read<uint64_t>(where + " dim " + std::to_string(d));
      if (!ne) return ne.error();
      if (*ne == 0 || *ne > uint64_t(1) << 40)
        return Error{where + ": dim " + std::to_string(d) + " = " + std::to_string(*ne) + " is out of range"};
      if (n_elements > std::numeric_limits<int64_t>::max() / int64_t(*ne))
        return Error{where + ": element count overflows"};
      n_elements *= int64_t(*ne);
      t.shape[d] = int64_t(*ne);
    }
    t.n_elements = n_elements;
    auto type = read<uint32_t>(where + " type");
    if (!type) return type.error();
    auto traits = ggml_type_traits(*type);
    if (!traits) return Error{where + ": unsupported tensor type " + std::to_string(*type)};
    t.type = traits->type;
    if (t.shape[0] % traits->block_size != 0)
      return Error{where + ": row length " + std::to_string(t.shape[0]) + " is not a multiple of the " +
                   traits->name + " block size"};
    const uint64_t n_blocks = uint64_t(n_elements / traits->block_size);
    if (n_blocks > std::numeric_limits<uint64_t>::max() / traits->block_bytes)
      return Error{where + ": byte size overflows"};
    t.nbytes = size_t(n_blocks * traits->block_bytes);
    auto offset = read<uint64_t>(where + " offset");
    if (!offset) return offset.error();
    if (*offset % f.alignment_ != 0)
      return Error{where + ": offset " + std::to_string(*offset) + " is not aligned to " +
                   std::to_string(f.alignment_)};
    t.offset = *offset;
    if (f.tensor_index_.count(t.name)) return Error{"tensor name '" + t.name + "' appears twice"};
    f.tensor_index_.emplace(t.name, size_t(i));
  }

  uint64_t data_offset = (uint64_t(pos_) + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (data_offset > size_) {
    // Files without tensors (vocab-only files) may end right after the metadata,
    // without the padding before an empty data section.
    if (!f.tensors_.empty()) return Error{"truncated GGUF: data section starts past the end of the file"};
    data_offset = size_;
  }
  f.data_offset_ = data_offset;
  const uint64_t data_size = size_ - data_offset;
  for (GgufTensor& t : f.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      return Error{"tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                   std::to_string(t.nbytes) + ") lies outside the data section of " +
                   std::to_string(data_size) + " bytes"};
    t.data = p_ + data_offset + t.offset;
    // Blocks are read in place through their structs; a misaligned start (possible
    // with general.alignment < 4) would make every field access undefined.
    const size_t align = ggml_traits(t.type).align;
    if (reinterpret_cast<uintptr_t>(t.data) % align != 0)
      return Error{"tensor '" + t.name + "': data at file offset " + std::to_string(data_offset + t.offset) +
                   " is not aligned to the " + std::to_string(align) + " bytes that " +
                   ggml_type_name(t.type) + " needs"};
  }
  return ok_status();
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(const uint8_t* data, size_t size) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->base_ = data;
  f->size_ = size;
  GgufParser parser(data, size);
  if (auto s = parser.parse(*f); !s) return s.error();
  return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  auto map = MappedFile::open(path);
  if (!map) return map.error();
  auto f = parse((*map)->data(), (*map)->size());
  if (!f) return Error{path + ": " + f.error().message};
  (*f)->map_ = std::move(*map);
  (*f)->path_ = path;
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_int() : std::nullopt;
}
std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : std::nullopt;
}
std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}
std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return *v->as_string();
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::ARRAY || v->array_type != GgufType::STRING) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) out.push_back(e.str);
  return out;
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::ARRAY) return std::nullopt;
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) {
    auto f = e.as_float();
    if (!f) return std::nullopt;
    out.push_back(float(*f));
  }
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::ARRAY) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) {
    auto i = e.as_int();
    if (!i) return std::nullopt;
    out.push_back(*i);
  }
  return out;
}

const GgufTensor* GgufFile::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvserve
