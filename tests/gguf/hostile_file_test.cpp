// Hostile GGUF input never crashes the reader: truncations at every header length,
// byte corruptions at every header position, and hand-built files that each break
// one rule. Every case must parse or return an Error naming what was wrong. Inputs
// are copied into exact-size heap buffers so that a sanitizer build catches overreads.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"

namespace kvserve {
namespace {

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Words an error must contain one of, so that it says which part of the file is bad.
bool names_a_field(const std::string& msg) {
  for (const char* w : {"magic", "version", "tensor_count", "metadata_kv_count", "metadata", "tensor",
                        "general.alignment", "data section"})
    if (msg.find(w) != std::string::npos) return true;
  return false;
}

// Parses an exact-size copy; returns the error message or "" on success.
std::string parse_copy(const uint8_t* data, size_t n) {
  std::vector<uint8_t> copy(data, data + n);
  auto f = GgufFile::parse(copy.data(), copy.size());
  if (f) {
    // Touch everything a caller would read.
    size_t sum = 0;
    for (const auto& t : (*f)->tensors()) sum += t.nbytes ? t.data[0] + t.data[t.nbytes - 1] : 0;
    for (const auto& [k, v] : (*f)->metadata()) sum += k.size() + v.array.size();
    EXPECT_GE(sum, 0u);
    return "";
  }
  return f.error().message;
}

class HostileShared : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = read_all(test::shared_path("models/stories260K.gguf"));
    ASSERT_GT(bytes_.size(), 100000u);
    auto f = GgufFile::parse(bytes_.data(), bytes_.size());
    ASSERT_TRUE(f) << f.error().message;
    header_ = size_t((*f)->data_offset());  // metadata + tensor infos + padding
  }
  std::vector<uint8_t> bytes_;
  size_t header_ = 0;
};

TEST_F(HostileShared, TruncatedAtEveryHeaderLength) {
  int errors = 0;
  for (size_t len = 0; len < header_; ++len) {
    const std::string err = parse_copy(bytes_.data(), len);
    ASSERT_FALSE(err.empty()) << "parsed a file truncated to " << len;
    ASSERT_TRUE(names_a_field(err)) << len << ": " << err;
    ++errors;
  }
  EXPECT_EQ(errors, int(header_));
}

TEST_F(HostileShared, TruncatedInsideTheData) {
  for (size_t len = header_; len < bytes_.size(); len += 4093) {
    const std::string err = parse_copy(bytes_.data(), len);
    ASSERT_FALSE(err.empty()) << len;
    EXPECT_NE(err.find("lies outside the data section"), std::string::npos) << err;
  }
  EXPECT_EQ(parse_copy(bytes_.data(), bytes_.size()), "");
}

TEST_F(HostileShared, CorruptedAtEveryHeaderPosition) {
  std::vector<uint8_t> buf = bytes_;  // exact size: overreads past the end are caught
  int errors = 0, parsed = 0;
  for (size_t pos = 0; pos < header_; ++pos) {
    const uint8_t orig = buf[pos];
    for (uint8_t v : {uint8_t(orig ^ 0xFF), uint8_t(orig + 1)}) {
      if (v == orig) continue;
      buf[pos] = v;
      auto f = GgufFile::parse(buf.data(), buf.size());
      if (f) {
        ++parsed;
      } else {
        ++errors;
        ASSERT_TRUE(names_a_field(f.error().message)) << pos << ": " << f.error().message;
      }
    }
    buf[pos] = orig;
  }
  // Most flips land in strings (token texts) and still parse; many break structure.
  EXPECT_GT(errors, 1000);
  EXPECT_GT(parsed, 1000);
}

// ---- Hand-built files breaking one rule each ----------------------------------

class Builder {
 public:
  Builder& u32(uint32_t v) { return raw(&v, 4); }
  Builder& u64(uint64_t v) { return raw(&v, 8); }
  Builder& u8(uint8_t v) { return raw(&v, 1); }
  Builder& str(const std::string& s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);
  }
  Builder& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  Builder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).u32(uint32_t(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Builder& pad_to(size_t align) {
    while (b_.size() % align) b_.push_back(0);
    return *this;
  }
  Builder& zeros(size_t n) {
    b_.resize(b_.size() + n);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  Builder& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
    return *this;
  }
  std::vector<uint8_t> b_;
};

std::string error_of(const Builder& b) {
  const std::string err = parse_copy(b.bytes().data(), b.bytes().size());
  EXPECT_FALSE(err.empty());
  return err;
}

#define EXPECT_ERROR_HAS(builder, text)                                                            \
  do {                                                                                             \
    const std::string e_ = error_of(builder);                                                      \
    EXPECT_NE(e_.find(text), std::string::npos) << "error: '" << e_ << "' lacks '" << text << "'"; \
  } while (0)

TEST(HostileBuilt, ValidMinimalFileParses) {
  Builder b;
  b.header(1, 2).kv_u32("general.alignment", 32).str("general.architecture").u32(8).str("llama");
  b.tensor("w", {32, 2}, 8 /*Q8_0*/, 0).pad_to(32).zeros(2 * 34);
  EXPECT_EQ(parse_copy(b.bytes().data(), b.bytes().size()), "");
}

TEST(HostileBuilt, HeaderFields) {
  EXPECT_ERROR_HAS(Builder().u32(0x12345678).u32(3).u64(0).u64(0), "bad magic");
  EXPECT_ERROR_HAS(Builder().header(0, 0, 7), "unsupported GGUF version 7");
  EXPECT_ERROR_HAS(Builder().header(0, 0, 0x03000000), "big-endian");
  EXPECT_ERROR_HAS(Builder().header(uint64_t(1) << 62, 0), "tensor_count");
  EXPECT_ERROR_HAS(Builder().header(0, ~uint64_t(0)), "metadata_kv_count");
}

TEST(HostileBuilt, MetadataFields) {
  EXPECT_ERROR_HAS(Builder().header(0, 1).u64(uint64_t(1) << 40).zeros(16), "metadata[0] key length");
  EXPECT_ERROR_HAS(Builder().header(0, 1).u64(1000).zeros(20), "metadata[0] key needs 1000 bytes");
  EXPECT_ERROR_HAS(Builder().header(0, 1).str("k").u32(13).zeros(8), "metadata 'k': unknown value type 13");
  EXPECT_ERROR_HAS(Builder().header(0, 1).str("b").u32(7).u8(2), "metadata 'b': bool value 2");
  EXPECT_ERROR_HAS(Builder().header(0, 1).str("a").u32(9).u32(77).u64(1), "unknown array element type 77");
  EXPECT_ERROR_HAS(Builder().header(0, 1).str("a").u32(9).u32(4).u64(1000).zeros(64),
                   "metadata 'a': element count 1000");
  EXPECT_ERROR_HAS(Builder().header(0, 1).str("a").u32(9).u32(8).u64(2).str("x").u64(99),
                   "metadata 'a' needs 99");
  Builder nested;
  nested.header(0, 1).str("n").u32(9);
  for (int i = 0; i < 20; ++i) nested.u32(9).u64(1);
  nested.zeros(64);
  EXPECT_ERROR_HAS(nested, "nested deeper");
  EXPECT_ERROR_HAS(Builder().header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2), "'dup' appears twice");
  EXPECT_ERROR_HAS(Builder().header(0, 1).kv_u32("general.alignment", 48).zeros(64), "general.alignment");
  EXPECT_ERROR_HAS(Builder().header(0, 1).kv_u32("general.alignment", 0).zeros(64), "general.alignment");
}

TEST(HostileBuilt, TensorFields) {
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data) {
    Builder b;
    b.header(1, 0).tensor("t", dims, type, offset).pad_to(32).zeros(data);
    return b;
  };
  EXPECT_ERROR_HAS(one({}, 0, 0, 64), "tensor 't': n_dims 0");
  EXPECT_ERROR_HAS(one({1, 1, 1, 1, 1}, 0, 0, 64), "tensor 't': n_dims 5");
  EXPECT_ERROR_HAS(one({4, 0}, 0, 0, 64), "tensor 't': dim 1 = 0");
  EXPECT_ERROR_HAS(one({uint64_t(1) << 41}, 0, 0, 64), "tensor 't': dim 0");
  EXPECT_ERROR_HAS(one({uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0, 64), "element count overflows");
  EXPECT_ERROR_HAS(one({4}, 5 /*removed Q4_2*/, 0, 64), "tensor 't': unsupported tensor type 5");
  EXPECT_ERROR_HAS(one({33}, 8, 0, 64), "not a multiple of the q8_0 block size");
  EXPECT_ERROR_HAS(one({4}, 0, 8, 64), "offset 8 is not aligned");
  EXPECT_ERROR_HAS(one({16}, 0, 0, 63), "lies outside the data section");
  EXPECT_ERROR_HAS(one({16}, 0, ~uint64_t(0) - 31, 64), "lies outside the data section");
  Builder dup;
  dup.header(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).pad_to(32).zeros(64);
  EXPECT_ERROR_HAS(dup, "'t' appears twice");
  EXPECT_ERROR_HAS(Builder().header(1, 0).tensor("t", {8}, 0, 0), "data section starts past the end");
}

// general.alignment may be 1, which lets a tensor start at an odd byte; kernels read
// blocks through their structs, so such data is refused rather than read misaligned.
TEST(HostileBuilt, TensorDataMisalignedForItsType) {
  for (const auto& [type, align] :
       {std::pair<uint32_t, size_t>{0 /*F32*/, 4}, {8 /*Q8_0*/, 2}, {1 /*F16*/, 2}}) {
    for (uint64_t offset = 0; offset < 4; ++offset) {
      Builder b;
      b.header(1, 1).kv_u32("general.alignment", 1).tensor("t", {32}, type, offset);
      const size_t data_start = b.bytes().size() + offset;  // exact-size copies start 16-aligned
      b.zeros(size_t(offset) + 128);
      const std::string err = parse_copy(b.bytes().data(), b.bytes().size());
      if (data_start % align == 0)
        EXPECT_EQ(err, "") << type << " at " << data_start;
      else
        EXPECT_NE(err.find("is not aligned to the " + std::to_string(align) + " bytes"), std::string::npos)
            << type << " at " << data_start << ": " << err;
    }
  }
}

}  // namespace
}  // namespace kvserve
