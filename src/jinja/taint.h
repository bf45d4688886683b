// Request data in a chat template's output. A chat request's messages (content, names,
// roles, tool calls and schemas) are untrusted: whatever the template does with them, a
// control token such as <|im_end|> written in them must reach the model as the plain
// tokens that spell it, never as the control token (issue: special-token injection).
//
// So strings carry the byte ranges that came from request data (Value::taint), and the
// renderer returns them with the prompt (RenderedText) for the tokenizer, which reads
// control tokens only where every byte is the template's own. The marks follow the data
// exactly through concatenation (+, ~, join), slicing, captured blocks and macros; every
// other transformation (filters, methods, formatting, tojson...) errs on the side of
// untrusted: its result is wholly untrusted when any input holds request data.
#pragma once

#include <string>

#include "core/text_range.h"
#include "jinja/value.h"

namespace kvserve::jinja {

class Value;

// Text and the bytes of it that came from request data: a rendered template, or a string
// being built from marked pieces (concatenation, join, a captured block).
struct RenderedText {
  std::string text;
  TextRanges untrusted;
  // Appends s, whose bytes `marks` (null: none) came from request data.
  void append(const std::string& s, const TextRanges* marks = nullptr);
  // Appends what {{ v }} prints, with v's marks (see output_of).
  void append(const Value& v);
  // The text as a string Value carrying its marks.
  Value take_value();
};

// A string wholly from request data.
Value untrusted(std::string s);
// Marks v as request data: a string wholly, an array's or object's strings (and an
// object's keys) deeply. Numbers, booleans and none cannot spell a control token.
void mark_untrusted(Value& v);
// Whether v holds any request data (deeply).
bool is_tainted(const Value& v);
// a + b for strings (or what {{ }} prints of b), the marks of both kept.
Value concat(const Value& a, const Value& b);
// What {{ v }} prints, as a string with v's marks (wholly marked for a container that
// holds request data).
Value output_of(const Value& v);
// Bytes [begin, end) of a string with their marks.
Value substring(const Value& s, size_t begin, size_t end);
// The result of a function that does not track marks: wholly (deeply) untrusted when an
// input held request data.
void taint_result(Value& result, bool inputs_tainted);
bool args_tainted(const CallArgs& a);

}  // namespace kvserve::jinja
