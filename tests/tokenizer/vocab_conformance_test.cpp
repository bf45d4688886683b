// Conformance with llama.cpp: every string of shared/vocab/ggml-vocab-<name>.gguf.inp must
// encode (no BOS, no special parsing) to exactly the ids in the matching .out line.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// .inp: strings each followed by "\n__ggml_vocab_test__\n"; .out: one line of ids each.
std::vector<Case> load_cases(const std::string& base) {
  const std::string inp = read_all(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0; pos < inp.size();) {
    size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::ifstream out(base + ".out");
  std::string line;
  for (Case& c : cases) {
    if (!std::getline(out, line)) break;
    std::istringstream ls(line);
    int32_t id;
    while (ls >> id) c.ids.push_back(id);
  }
  return cases;
}

class VocabConformance : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabConformance, MatchesLlamaCppIdsAndRoundTrips) {
  const std::string base = test::shared_path(std::string("vocab/ggml-vocab-") + GetParam() + ".gguf");
  if (!test::file_exists(base)) KVSERVE_MISSING_ASSET(base);
  auto file = GgufFile::open(base);
  ASSERT_TRUE(file) << file.error().message;
  auto tok = Tokenizer::from_gguf(**file);
  ASSERT_TRUE(tok) << tok.error().message;

  const std::vector<Case> cases = load_cases(base);
  ASSERT_EQ(cases.size(), 46u);
  int mismatches = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> ids = (*tok)->encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, c.ids) << "text: '" << c.text << "'";
    mismatches += ids != c.ids;
    EXPECT_EQ((*tok)->decode(ids), c.text) << "round trip of '" << c.text << "'";
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(SharedVocabs, VocabConformance,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "starcoder", "deepseek-coder"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace kvserve
