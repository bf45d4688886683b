// llama.cpp's own tokenization of the golden prompts (shared/golden/*.shared.jsonl):
// prompt_tokens (with BOS) must match, and the greedy continuation must detokenize, token
// by token, to greedy_text.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

TEST(GoldenTokens, PromptsAndGreedyTextMatchLlamaCpp) {
  const std::string dir = test::shared_path("golden");
  if (!std::filesystem::is_directory(dir)) KVSERVE_MISSING_ASSET(dir);
  int files = 0, prompts = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string fname = entry.path().filename().string();
    const std::string suffix = ".shared.jsonl";
    if (!fname.ends_with(suffix)) continue;
    const std::string model =
        test::shared_path("models/" + fname.substr(0, fname.size() - suffix.size()) + ".gguf");
    if (!test::file_exists(model)) continue;
    auto file = GgufFile::open(model);
    ASSERT_TRUE(file) << file.error().message;
    auto tok = Tokenizer::from_gguf(**file);
    ASSERT_TRUE(tok) << tok.error().message;
    ++files;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      const std::string prompt = j.at("prompt");
      const auto want = j.at("prompt_tokens").get<std::vector<int32_t>>();
      EXPECT_EQ((*tok)->encode(prompt, true, false), want) << fname << ": " << prompt;

      const auto greedy = j.at("greedy_tokens").get<std::vector<int32_t>>();
      StreamingDetokenizer detok(**tok, /*skip_special=*/true);
      std::string text;
      for (int32_t id : greedy) text += detok.push(id);
      text += detok.flush();
      EXPECT_EQ(text, j.at("greedy_text").get<std::string>()) << fname << ": " << prompt;
      ++prompts;
    }
  }
  EXPECT_GT(files, 0);
  EXPECT_GT(prompts, 0);
}

}  // namespace
}  // namespace kvserve
