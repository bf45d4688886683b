// Request parsing: every accepted form of each field, and an OpenAI-style error naming
// the field for each kind of bad input.
#include "server/openai_parse.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvserve::server {
namespace {

ParseLimits limits() {
  ParseLimits l;
  l.model_names = {"m"};
  l.n_vocab = 512;
  l.max_model_len = 256;
  return l;
}

ApiRequest ok_completion(const std::string& body) {
  ParseResult r = parse_completion_request(body, limits());
  if (is_error(r)) ADD_FAILURE() << std::get<ApiError>(r).message << " for " << body;
  return is_error(r) ? ApiRequest{} : std::get<ApiRequest>(r);
}

ApiRequest ok_chat(const std::string& body) {
  ParseResult r = parse_chat_request(body, limits());
  if (is_error(r)) ADD_FAILURE() << std::get<ApiError>(r).message << " for " << body;
  return is_error(r) ? ApiRequest{} : std::get<ApiRequest>(r);
}

ApiError completion_error(const std::string& body) {
  ParseResult r = parse_completion_request(body, limits());
  EXPECT_TRUE(is_error(r)) << body;
  return is_error(r) ? std::get<ApiError>(r) : ApiError{};
}

ApiError chat_error(const std::string& body) {
  ParseResult r = parse_chat_request(body, limits());
  EXPECT_TRUE(is_error(r)) << body;
  return is_error(r) ? std::get<ApiError>(r) : ApiError{};
}

TEST(OpenAIParse, CompletionDefaults) {
  ApiRequest r = ok_completion(R"({"model": "m", "prompt": "hello"})");
  EXPECT_EQ(r.kind, ApiKind::Completion);
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text(), "hello");
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.params.wants_logprobs());
}

TEST(OpenAIParse, ModelOptionalAndUnknownIs404) {
  EXPECT_EQ(ok_completion(R"({"prompt": "x"})").model, "m");
  ApiError e = completion_error(R"({"model": "other", "prompt": "x"})");
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
}

TEST(OpenAIParse, PromptForms) {
  ApiRequest ids = ok_completion(R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_EQ(ids.prompts[0].ids(), (std::vector<int32_t>{1, 2, 3}));
  ApiRequest texts = ok_completion(R"({"prompt": ["a", "b"]})");
  ASSERT_EQ(texts.prompts.size(), 2u);
  EXPECT_EQ(texts.prompts[1].text(), "b");
  ApiRequest lists = ok_completion(R"({"prompt": [[5], [6, 7]]})");
  ASSERT_EQ(lists.prompts.size(), 2u);
  EXPECT_EQ(lists.prompts[1].ids(), (std::vector<int32_t>{6, 7}));
  for (const char* bad :
       {R"({"prompt": 5})", R"({"prompt": []})", R"({"prompt": [1, "a"]})", R"({"prompt": [600]})",
        R"({"prompt": [-1]})", R"({"prompt": [[]]})", R"({})", R"({"prompt": [{"a": 1}]})"}) {
    ApiError e = completion_error(bad);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "prompt") << bad;
  }
}

TEST(OpenAIParse, SamplingFields) {
  ApiRequest r = ok_completion(R"({"prompt": "x", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
      "top_k": 40, "min_p": 0.05, "n": 3, "best_of": 4, "stop": ["a", "bc"], "seed": 42,
      "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"13": 5, "7": -100},
      "logprobs": 2, "echo": true, "user": "u"})");
  const SamplingParams& p = r.params;
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(p.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_FLOAT_EQ(p.min_p, 0.05f);
  EXPECT_EQ(p.n, 3);
  EXPECT_EQ(p.best_of, 4);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "bc"}));
  ASSERT_TRUE(p.seed.has_value());
  EXPECT_EQ(*p.seed, 42u);
  EXPECT_FLOAT_EQ(p.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, -0.5f);
  ASSERT_EQ(p.logit_bias.size(), 2u);
  EXPECT_EQ(p.logit_bias[0].first, 13);
  EXPECT_FLOAT_EQ(p.logit_bias[0].second, 5.0f);
  EXPECT_EQ(p.logprobs, 2);
  EXPECT_EQ(p.prompt_logprobs, 2);  // echo + logprobs scores the prompt too
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.user, "u");
  EXPECT_EQ(ok_completion(R"({"prompt": "x", "stop": "zz"})").params.stop, (std::vector<std::string>{"zz"}));
  EXPECT_EQ(ok_completion(R"({"prompt": "x", "max_tokens": null})").max_tokens_given, false);
}

TEST(OpenAIParse, BadFieldsNameTheParam) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"prompt": "x", "max_tokens": "5"})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 257})", "max_tokens"},  // past the context
      {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
      {R"({"prompt": "x", "temperature": -1})", "temperature"},
      {R"({"prompt": "x", "temperature": 2.5})", "temperature"},
      {R"({"prompt": "x", "temperature": "hot"})", "temperature"},
      {R"({"prompt": "x", "top_p": 0})", "top_p"},
      {R"({"prompt": "x", "top_p": 1.1})", "top_p"},
      {R"({"prompt": "x", "top_k": 0})", "top_k"},
      {R"({"prompt": "x", "top_k": -2})", "top_k"},
      {R"({"prompt": "x", "min_p": 2})", "min_p"},
      {R"({"prompt": "x", "n": 0})", "n"},
      {R"({"prompt": "x", "n": 17})", "n"},  // too large
      {R"({"prompt": "x", "n": 3, "best_of": 2})", "best_of"},
      {R"({"prompt": "x", "stop": 5})", "stop"},
      {R"({"prompt": "x", "stop": [""]})", "stop"},
      {R"({"prompt": "x", "stop": ["a", 1]})", "stop"},
      {R"({"prompt": "x", "seed": "1"})", "seed"},
      {R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty"},
      {R"({"prompt": "x", "frequency_penalty": -2.5})", "frequency_penalty"},
      {R"({"prompt": "x", "logit_bias": {"abc": 1}})", "logit_bias"},
      {R"({"prompt": "x", "logit_bias": {"512": 1}})", "logit_bias"},
      {R"({"prompt": "x", "logit_bias": {"5": 101}})", "logit_bias"},
      {R"({"prompt": "x", "logit_bias": {"5": "a"}})", "logit_bias"},
      {R"({"prompt": "x", "logit_bias": [1]})", "logit_bias"},
      {R"({"prompt": "x", "logprobs": 21})", "logprobs"},
      {R"({"prompt": "x", "logprobs": true})", "logprobs"},
      {R"({"prompt": "x", "echo": 1})", "echo"},
      {R"({"prompt": "x", "stream": "yes"})", "stream"},
      {R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
      {R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})", "include_usage"},
      {R"({"prompt": "x", "stream": true, "n": 1, "best_of": 2})", "best_of"},
      {R"({"prompt": "x", "user": 5})", "user"},
      {R"({"prompt": "x", "suffix": "s"})", "suffix"},
  };
  for (const Case& c : cases) {
    ApiError e = completion_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
}

TEST(OpenAIParse, MalformedBodies) {
  for (const char* body : {"", "{", "[1,2]", "\"str\"", "{\"prompt\": \"x\",}", "nul"}) {
    ApiError e = completion_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
  // Invalid UTF-8 inside a string, raw and as an unpaired surrogate escape.
  EXPECT_EQ(completion_error(std::string("{\"prompt\": \"a\xff\xfe\"}")).status, 400);
  EXPECT_EQ(completion_error(std::string("{\"prompt\": \"\xc0\xaf\"}")).status, 400);
  EXPECT_EQ(completion_error(R"({"prompt": "\ud800"})").status, 400);
  EXPECT_EQ(
      chat_error(std::string("{\"messages\": [{\"role\": \"user\", \"content\": \"\xed\xa0\x80\"}]}")).status,
      400);
}

TEST(OpenAIParse, ChatMessages) {
  ApiRequest r = ok_chat(R"({"model": "m", "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null},
      {"role": "developer", "content": "d"}]})");
  EXPECT_EQ(r.kind, ApiKind::Chat);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].role, "system");
  EXPECT_FALSE(r.params.wants_logprobs());
}

TEST(OpenAIParse, ChatFields) {
  ApiRequest r = ok_chat(R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9,
      "max_tokens": 3, "logprobs": true, "top_logprobs": 4, "stream": true,
      "stream_options": {"include_usage": true}})");
  EXPECT_EQ(r.params.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.params.logprobs, 4);
  EXPECT_EQ(r.top_logprobs, 4);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(ok_chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})").params.logprobs,
            0);
}

TEST(OpenAIParse, ChatErrors) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"messages": []})", "messages"},
      {R"({})", "messages"},
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": [{"content": "x"}]})", "messages"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages"},
      {R"({"messages": [{"role": "user"}]})", "messages"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})",
       "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0})",
       "max_completion_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "n": 100})", "n"},
  };
  for (const Case& c : cases) {
    ApiError e = chat_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.message;
  }
}

TEST(OpenAIParse, ResolveMaxTokens) {
  ApiRequest chat = ok_chat(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_FALSE(resolve_max_tokens(chat, 56, 256).has_value());
  EXPECT_EQ(chat.params.max_tokens, 200);  // the rest of the context
  ApiRequest comp = ok_completion(R"({"prompt": "x"})");
  EXPECT_FALSE(resolve_max_tokens(comp, 10, 256).has_value());
  EXPECT_EQ(comp.params.max_tokens, 16);
  ApiRequest big = ok_completion(R"({"prompt": "x", "max_tokens": 100})");
  auto e = resolve_max_tokens(big, 200, 256);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "max_tokens");
  EXPECT_EQ(e->code, "context_length_exceeded");
  ApiRequest full = ok_completion(R"({"prompt": "x"})");
  ASSERT_TRUE(resolve_max_tokens(full, 256, 256).has_value());
}

TEST(OpenAIParse, ErrorBodyShape) {
  auto j = nlohmann::json::parse(error_body(ApiError{400, "bad n", "invalid_request_error", "n", ""}));
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["message"], "bad n");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

}  // namespace
}  // namespace kvserve::server
