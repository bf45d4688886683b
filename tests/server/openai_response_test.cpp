// Response schema: the exact objects OpenAI clients parse, and SSE framing.
#include "server/openai_response.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvserve::server {
namespace {

using json = nlohmann::json;

ResponseMeta meta(ApiKind kind) {
  return {make_response_id(kind), 1700000000, "m"};
}

json sse_json(const std::string& event) {
  EXPECT_EQ(event.rfind("data: ", 0), 0u);
  EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
  return json::parse(event.substr(6, event.size() - 8));
}

TEST(OpenAIResponse, Ids) {
  std::string a = make_response_id(ApiKind::Completion), b = make_response_id(ApiKind::Completion);
  EXPECT_EQ(a.rfind("cmpl-", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(make_response_id(ApiKind::Chat).rfind("chatcmpl-", 0), 0u);
}

TEST(OpenAIResponse, CompletionBody) {
  ChoiceResult c;
  c.index = 0;
  c.text = " there";
  c.finish_reason = "length";
  c.has_logprobs = true;
  c.logprobs = {{"\xc3\xa9", -0.5f, true, {{"\xc3\xa9", -0.5f}, {"a", -1.5f}}}, {" t", -0.25f, true, {}}};
  auto j = json::parse(completion_body(meta(ApiKind::Completion), {c}, Usage{3, 2}));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["created"], 1700000000);
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["index"], 0);
  EXPECT_EQ(ch["text"], " there");
  EXPECT_EQ(ch["finish_reason"], "length");
  EXPECT_EQ(ch["logprobs"]["tokens"], json({"\xc3\xa9", " t"}));
  EXPECT_EQ(ch["logprobs"]["token_logprobs"][1], -0.25);
  EXPECT_EQ(ch["logprobs"]["top_logprobs"][0]["a"], -1.5);
  EXPECT_EQ(ch["logprobs"]["text_offset"], json({0, 1}));  // characters, not bytes
  EXPECT_EQ(j["usage"], json({{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}}));
}

TEST(OpenAIResponse, EchoedFirstTokenHasNullLogprob) {
  ChoiceResult c;
  c.has_logprobs = true;
  c.logprobs = {{"<s>", 0.0f, false, {}}, {"x", -1.0f, true, {}}};
  auto j = json::parse(completion_body(meta(ApiKind::Completion), {c}, Usage{}));
  EXPECT_TRUE(j["choices"][0]["logprobs"]["token_logprobs"][0].is_null());
  EXPECT_TRUE(j["choices"][0]["logprobs"]["top_logprobs"][0].is_null());
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"][1], -1.0);
}

TEST(OpenAIResponse, ChatBody) {
  ChoiceResult c;
  c.index = 1;
  c.text = "Hello";
  c.finish_reason = "stop";
  c.has_logprobs = true;
  c.logprobs = {{"\xe2\x80", -0.1f, true, {{"He", -2.0f}}}};  // partial UTF-8 piece
  auto j = json::parse(chat_body(meta(ApiKind::Chat), {c}, Usage{4, 1}));
  EXPECT_EQ(j["object"], "chat.completion");
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["index"], 1);
  EXPECT_EQ(ch["message"]["role"], "assistant");
  EXPECT_EQ(ch["message"]["content"], "Hello");
  EXPECT_EQ(ch["finish_reason"], "stop");
  const json& lp = ch["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "bytes:\\xe2\\x80");
  EXPECT_EQ(lp["bytes"], json({0xe2, 0x80}));
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.1f);
  EXPECT_EQ(lp["top_logprobs"][0]["token"], "He");
  EXPECT_EQ(lp["top_logprobs"][0]["bytes"], json({'H', 'e'}));
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  // No logprobs requested -> null.
  c.has_logprobs = false;
  EXPECT_TRUE(json::parse(chat_body(meta(ApiKind::Chat), {c}, Usage{}))["choices"][0]["logprobs"].is_null());
}

TEST(OpenAIResponse, CompletionChunks) {
  ResponseMeta m = meta(ApiKind::Completion);
  int64_t offset = 0;
  std::vector<TokenLogprob> lps = {{"ab", -1.0f, true, {}}};
  json a = sse_json(completion_chunk(m, 2, "ab", &lps, &offset, "", true));
  EXPECT_EQ(a["object"], "text_completion");
  EXPECT_EQ(a["id"], m.id);
  EXPECT_EQ(a["choices"][0]["index"], 2);
  EXPECT_EQ(a["choices"][0]["text"], "ab");
  EXPECT_TRUE(a["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(a.contains("usage") && a["usage"].is_null());
  EXPECT_EQ(offset, 2);
  json b = sse_json(completion_chunk(m, 2, "", nullptr, &offset, "stop", false));
  EXPECT_EQ(b["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(b.contains("usage"));
  json u = sse_json(usage_chunk(m, ApiKind::Completion, Usage{5, 7}));
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 12);
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
}

TEST(OpenAIResponse, ChatChunks) {
  ResponseMeta m = meta(ApiKind::Chat);
  json first = sse_json(chat_chunk(m, 0, true, "", nullptr, "", false));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  json tok = sse_json(chat_chunk(m, 0, false, "Hi", nullptr, "", false));
  EXPECT_EQ(tok["choices"][0]["delta"], json({{"content", "Hi"}}));
  EXPECT_TRUE(tok["choices"][0]["finish_reason"].is_null());
  json fin = sse_json(chat_chunk(m, 0, false, "", nullptr, "length", false));
  EXPECT_EQ(fin["choices"][0]["delta"], json::object());
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  json u = sse_json(usage_chunk(m, ApiKind::Chat, Usage{1, 2}));
  EXPECT_EQ(u["object"], "chat.completion.chunk");
  EXPECT_EQ(u["usage"]["completion_tokens"], 2);
}

TEST(OpenAIResponse, Utf8) {
  EXPECT_TRUE(is_valid_utf8("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_EQ(token_display("\xff"), "bytes:\\xff");
}

TEST(OpenAIResponse, Models) {
  auto j = json::parse(models_body({"a", "b"}, 5, 2048));
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][1]["id"], "b");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["owned_by"], "kvserve");
  EXPECT_EQ(j["data"][0]["max_model_len"], 2048);
}

}  // namespace
}  // namespace kvserve::server
