// Every GGUF file in shared/models and shared/vocab (and the SmolLM2 model when it has
// been fetched) parses, with consistent tensor data ranges and tokenizer metadata.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"

namespace kvserve {
namespace {

std::vector<std::string> gguf_files_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".gguf") == 0) out.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void expect_well_formed(const GgufFile& f, bool expect_tensors) {
  EXPECT_EQ(f.version(), 3u);
  ASSERT_TRUE(f.get_string("general.architecture").has_value());
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.has_value());
  EXPECT_GT(tokens->size(), 100u);
  EXPECT_TRUE(f.get_string("tokenizer.ggml.model").has_value());
  if (expect_tensors) {
    EXPECT_FALSE(f.tensors().empty());
  }
  for (const GgufTensor& t : f.tensors()) {
    EXPECT_EQ(t.nbytes, ggml_row_bytes(t.type, t.ne(0)) * size_t(t.n_elements / t.ne(0))) << t.name;
    EXPECT_NE(t.data, nullptr) << t.name;
    EXPECT_LE(f.data_offset() + t.offset + t.nbytes, f.file_size()) << t.name;
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
  }
}

TEST(SharedFiles, EveryModelParses) {
  const std::vector<std::string> files = gguf_files_in(test::shared_path("models"));
  ASSERT_GE(files.size(), 11u);  // stories260K, llama-2-tiny-random, 9 synth-3m files
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f) << f.error().message;
    expect_well_formed(**f, true);
  }
}

TEST(SharedFiles, EveryVocabParses) {
  const std::vector<std::string> files = gguf_files_in(test::shared_path("vocab"));
  ASSERT_GE(files.size(), 5u);
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f) << f.error().message;
    // Vocab-only files: metadata, no tensors, no data section.
    EXPECT_TRUE((*f)->tensors().empty());
    expect_well_formed(**f, false);
  }
}

TEST(SharedFiles, SmolLM2Parses) {
  const std::string path = test::smollm2_path();
  if (!test::file_exists(path)) KVSERVE_MISSING_ASSET(path << " (run scripts/fetch_model.sh)");
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f) << f.error().message;
  expect_well_formed(**f, true);
  EXPECT_EQ((*f)->get_int("llama.block_count"), 30);
  EXPECT_EQ((*f)->get_string("tokenizer.ggml.pre"), "smollm");
}

}  // namespace
}  // namespace kvserve
