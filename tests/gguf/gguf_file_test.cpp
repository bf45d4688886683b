#include "gguf/gguf_file.h"

#include <gtest/gtest.h>

#include "common/test_paths.h"

namespace kvserve {
namespace {

TEST(GgufFile, ReadsStories260K) {
  auto f = GgufFile::open(test::shared_path("models/stories260K.gguf"));
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->get_string("general.architecture"), "llama");
  EXPECT_EQ((*f)->get_int("llama.embedding_length"), 64);
  const GgufTensor* emb = (*f)->tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::F32);
  EXPECT_EQ(emb->ne(0), 64);
  EXPECT_EQ(emb->ne(1), 512);
  auto tokens = (*f)->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens);
  EXPECT_EQ(tokens->size(), 512u);
}

TEST(GgufFile, RejectsGarbage) {
  const uint8_t junk[] = {'G', 'G', 'U', 'F', 1, 0, 0, 0};
  auto f = GgufFile::parse(junk, sizeof(junk));
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message.find("version 1"), std::string::npos);
}

}  // namespace
}  // namespace kvserve
