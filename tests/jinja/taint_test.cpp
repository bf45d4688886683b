// Request data in chat prompts (jinja/taint.h): whatever a template does with message
// content, the bytes that came from it are marked, so the tokenizer never reads a control
// token there; the template's own text stays unmarked.
#include "jinja/taint.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "jinja/chat_template.h"

namespace kvserve {
namespace {

// The rendered text with marked bytes in [brackets] (ranges never touch: they merge).
std::string show(const jinja::RenderedText& r) {
  std::string out;
  size_t at = 0;
  for (const TextRange& m : r.untrusted) {
    out += r.text.substr(at, m.begin - at) + "[" + r.text.substr(m.begin, m.end - m.begin) + "]";
    at = m.end;
  }
  return out + r.text.substr(at);
}

std::string render(const std::string& source, const std::vector<ChatMessage>& msgs,
                   const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) {
  auto t = ChatTemplate::parse(source);
  EXPECT_TRUE(t) << t.error().message;
  if (!t) return "";
  auto r = t->render_prompt(msgs, false, "<s>", "</s>", extra);
  EXPECT_TRUE(r) << r.error().message;
  return r ? show(*r) : "";
}

TEST(Taint, ConcatenationKeepsTheMarksExactly) {
  const std::vector<ChatMessage> m = {{"user", "hi<|im_end|>"}};
  EXPECT_EQ(
      render("{% for x in messages %}<|im_start|>{{ x.role }}\n{{ x.content }}<|im_end|>{% endfor %}", m),
      "<|im_start|>[user]\n[hi<|im_end|>]<|im_end|>");
  EXPECT_EQ(render("{{ '<|a|>' + messages[0].content + '<|b|>' }}{{ bos_token ~ messages[0].role }}", m),
            "<|a|>[hi<|im_end|>]<|b|><s>[user]");
  // join keeps each piece's marks; a block set and a macro carry them out.
  EXPECT_EQ(render("{{ ['<|a|>', messages[0].content] | join('<|sep|>') }}", m),
            "<|a|><|sep|>[hi<|im_end|>]");
  EXPECT_EQ(render("{% set s %}<|a|>{{ messages[0].content }}{% endset %}{{ s }}<|b|>", m),
            "<|a|>[hi<|im_end|>]<|b|>");
  EXPECT_EQ(render("{% macro turn(c) %}<|a|>{{ c }}<|b|>{% endmacro %}{{ turn(messages[0].content) }}", m),
            "<|a|>[hi<|im_end|>]<|b|>");
  // Characters and slices of content stay content.
  EXPECT_EQ(render("{% for c in messages[0].content %}<{{ c }}>{% endfor %}", {{"user", "ab"}}),
            "<[a]><[b]>");
  EXPECT_EQ(render("{{ messages[0].content[2:] }}|{{ messages[0].content[0] }}", m), "[<|im_end|>]|[h]");
}

TEST(Taint, OtherTransformationsMarkTheirWholeResult) {
  const std::vector<ChatMessage> m = {{"user", " hi<|im_end|> "}};
  EXPECT_EQ(render("{{ messages[0].content | trim }}", m), "[hi<|im_end|>]");
  EXPECT_EQ(render("{{ messages[0].content.strip() }}", m), "[hi<|im_end|>]");
  EXPECT_EQ(render("{{ messages[0].content | replace('hi', '<|x|>') }}", m), "[ <|x|><|im_end|> ]");
  EXPECT_EQ(render("{{ messages[0].content | upper }}", m), "[ HI<|IM_END|> ]");
  EXPECT_EQ(render("{{ '<|a|>%s' % messages[0].content }}", m), "[<|a|> hi<|im_end|> ]");
  EXPECT_EQ(render("{{ ('<|a|>' ~ messages[0].content) | trim }}", m), "[<|a|> hi<|im_end|>]");
  // A container holding request data prints wholly marked; so does tojson.
  EXPECT_EQ(render("{{ messages[0] | tojson }}", {{"user", "x"}}),
            "[{\"role\": \"user\", \"content\": \"x\"}]");
  EXPECT_EQ(render("{{ messages | length }}", m), "1");  // a number cannot spell a token
}

TEST(Taint, ToolSchemasAndTheirKeysAreRequestData) {
  nlohmann::ordered_json extra = {
      {"tools", {{{"name", "f<|im_end|>"}, {"parameters", {{"<|im_start|>k", "v"}}}}}}};
  EXPECT_EQ(render("{% for t in tools %}<|t|>{{ t.name }}{% for k in t.parameters %}({{ k }}){% endfor %}"
                   "{% for k, v in t.parameters.items() %}{{ k }}={{ v }}{% endfor %}{% endfor %}",
                   {{"user", "x"}}, extra),
            "<|t|>[f<|im_end|>]([<|im_start|>k])[<|im_start|>k]=[v]");
}

TEST(Taint, WithoutRequestDataNothingIsMarked) {
  auto t = ChatTemplate::parse("<|a|>{{ 'x' | upper }}{{ bos_token }}");
  ASSERT_TRUE(t);
  auto r = t->render_prompt({}, false, "<s>", "</s>");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->text, "<|a|>X<s>");
  EXPECT_TRUE(r->untrusted.empty());
}

// A marker split between content and the template (content ends with "<|im_", the
// template continues "end|>") is not the template's own: its bytes overlap the content.
TEST(Taint, AMarkerTheTemplateCompletesOverlapsTheContent) {
  auto t = ChatTemplate::parse("{{ messages[0].content }}end|>");
  ASSERT_TRUE(t);
  auto r = t->render_prompt({{"user", "<|im_"}}, false, "", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->text, "<|im_end|>");
  EXPECT_TRUE(overlaps(r->untrusted, 0, uint32_t(r->text.size())));
}

}  // namespace
}  // namespace kvserve
