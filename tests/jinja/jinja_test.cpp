// Interpreter tests: each construct against outputs of the reference Jinja2 (3.1, configured as
// transformers does: trim_blocks, lstrip_blocks, loopcontrols, json.dumps-style tojson), plus
// the project's own rules (lenient undefined, errors as values, runaway guards).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "jinja/chat_template.h"
#include "jinja/parser.h"
#include "jinja/render.h"

namespace kvserve::jinja {
namespace {

Result<std::string> render_str(const std::string& tmpl, const std::string& ctx_json = "{}",
                               const RenderLimits& limits = {}) {
  auto t = parse_template(tmpl);
  if (!t) return t.error();
  Value ctx = json_to_value(nlohmann::ordered_json::parse(ctx_json));
  return render(**t, ctx.object(), limits);
}

struct Case {
  const char* name;
  const char* tmpl;
  const char* ctx;
  const char* expected;
};

// Expected strings: rendered by Python Jinja2 3.1.6 with the environment above.
const Case kCases[] = {
    {"plain_text", "hello world", R"({})", "hello world"},
    {"output_literals", "{{ 1 }} {{ 1.5 }} {{ 'a' }} {{ true }} {{ none }} {{ [1, 'b'] }} {{ {'k': none} }}",
     R"({})", "1 1.5 a True None [1, 'b'] {'k': None}"},
    {"float_repr", "{{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 2.0 }} {{ 1/3 }}", R"({})",
     "1e+20 1.5e-07 0.30000000000000004 2.0 0.3333333333333333"},
    {"arith",
     "{{ 7 // 2 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 3 * 'ab' }} {{ 1 + 2 * 3 - 4 }}",
     R"({})", "3 -4 2 3.5 1024 ababab 3"},
    {"concat_tilde", "{{ 'n=' ~ 3 ~ ',' ~ none ~ ',' ~ true }}", R"({})", "n=3,None,True"},
    {"string_plus", "{{ 'a' + 'b' }}{{ [1] + [2, 3] }}", R"({})", "ab[1, 2, 3]"},
    {"unary_minus_filter", "{{ -2 | abs }} {{ -(3) }} {{ not true }}", R"({})", "2 -3 False"},
    {"compare",
     "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' == 'a' }} {{ 1 == 1.0 }} {{ 'b' > 'a' }} {{ 1 != 2 }} {{ [1,2] == "
     "[1,2] }}",
     R"({})", "True False True True True True True"},
    {"in_not_in", "{{ 'a' in 'cat' }} {{ 3 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }}", R"({})",
     "True False True True"},
    {"and_or_values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ none or [] }} {{ 1 and 0 }}", R"({})", "x b [] 0"},
    {"ternary", "{{ 'yes' if x else 'no' }} {{ 'y' if not x else 'n' }} [{{ 'only' if false }}]",
     R"({"x": 1})", "yes n []"},
    {"precedence_filter_binds_tight", "{{ 'a' + ' b ' | trim + 'c' }}", R"({})", "abc"},
    {"attr_and_subscript", "{{ m.role }} {{ m['content'] }} {{ l[0] }} {{ l[-1] }} {{ l.1 }}",
     R"({"m": {"role": "user", "content": "hi"}, "l": [10, 20, 30]})", "user hi 10 30 20"},
    {"slicing", "{{ 'abcdef'[::-1] }} {{ l[1:] }} {{ l[:2] }} {{ l[::2] }} {{ l[-2:] }} {{ 'héllo'[1:3] }}",
     R"({"l": [1,2,3,4]})", "fedcba [2, 3, 4] [1, 2] [1, 3] [3, 4] él"},
    {"if_elif_else",
     "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% endfor %}",
     R"({})", "one,two,many,"},
    {"loop_vars",
     "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length "
     "}}{{ loop.revindex }};{% endfor %}",
     R"({})", "10TrueFalse33;21FalseFalse32;32FalseTrue31;"},
    {"for_else", "{% for x in [] %}item{% else %}empty{% endfor %}", R"({})", "empty"},
    {"for_unpack_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
     R"({"d": {"b": 1, "a": 2}})", "b=1;a=2;"},
    {"for_inline_if",
     "{% for m in ms if m.role != 'system' %}{{ loop.index }}:{{ m.role }}/{{ loop.length }} {% endfor %}",
     R"({"ms": [{"role":"system"},{"role":"user"},{"role":"assistant"}]})", "1:user/2 2:assistant/2 "},
    {"for_dict_keys", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", R"({})", "xy"},
    {"loop_scoping",
     "{% set x = 'outer' %}{% for i in range(2) %}{% set x = 'inner' ~ i %}{{ x }} {% endfor %}{{ x }}",
     R"({})", "inner0 inner1 outer"},
    {"break_continue",
     "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif "
     "%}{{ i }}{% endfor %}",
     R"({})", "023"},
    {"nested_loops_loop_var",
     "{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% "
     "endfor %}",
     R"({})", "1x1 1y2 1|2x1 2y2 2|"},
    {"range_forms", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }}", R"({})",
     "[0, 1, 2] [1, 2, 3] [10, 7, 4, 1]"},
    {"set_and_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set s = 'v' %}{{ s }}", R"({})", "12v"},
    {"namespace_mutation",
     "{% set ns = namespace(found=false, n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% if i == 1 "
     "%}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}",
     R"({})", "True 3"},
    {"block_set", "{% set body %}inner {{ 1 + 1 }}{% endset %}[{{ body }}]", R"({})", "[inner 2]"},
    {"list_append",
     "{% set acc = [] %}{% for i in range(3) %}{% set _ = acc.append(i * 2) %}{% endfor %}{{ acc }}", R"({})",
     "[0, 2, 4]"},
    {"macro",
     "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ "
     "greet('Al', punct='?') }}",
     R"({})", "Hi Bob! Hi Al?"},
    {"macro_recursive",
     "{% macro down(n) %}{{ n }}{% if n > 0 %}{{ down(n - 1) }}{% endif %}{% endmacro %}{{ down(3) }}",
     R"({})", "3210"},
    {"call_block",
     "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold{% "
     "endcall %}",
     R"({})", "<b>bold</b>"},
    {"filter_block", "{% filter upper %}shout {{ 'it' }}{% endfilter %}", R"({})", "SHOUT IT"},
    {"raw_block", "{% raw %}{{ not evaluated }}{% endraw %}", R"({})", "{{ not evaluated }}"},
    {"tests_types",
     "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ d is "
     "mapping }} {{ l is iterable }} {{ 3 is number }} {{ l is sequence }} {{ t is true }} {{ f is false }} "
     "{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ s is not string }}",
     R"({"x": 1, "n": null, "s": "str", "d": {}, "l": [1], "t": true, "f": false})",
     "True False True True True True True True True True True True False False"},
    {"tests_more",
     "{{ 3 is odd }} {{ 4 is even }} {{ 'ab' is lower }} {{ 2 is eq 2 }} {{ 1 is in [1, 2] }} {{ 1.5 is "
     "float }} {{ 1 is integer }} {{ true is boolean }}",
     R"({})", "True True True True True True True True"},
    {"string_filters",
     "{{ '  pad  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello wORLD' | title }}|{{ 'hELLO' | "
     "capitalize }}|{{ 'a-b' | replace('-', '+') }}|{{ '<a&\"b>' | e }}|{{ 'one two  three' | wordcount }}",
     R"({})", "pad|AB|ab|Hello World|Hello|a+b|&lt;a&amp;&#34;b&gt;|3"},
    {"length_first_last",
     "{{ l | length }} {{ 'héllo' | length }} {{ d | count }} {{ l | first }} {{ l | last }} {{ 'xyz' | "
     "first }}",
     R"({"l": [3, 4, 5], "d": {"a": 1}})", "3 5 1 3 5 x"},
    {"join_default",
     "{{ l | join(', ') }}|{{ missing | default('dflt') }}|{{ '' | default('e', true) }}|{{ 'set' | d('x') "
     "}}|{{ none | default('n') }}",
     R"({"l": ["a", 1, "c"]})", "a, 1, c|dflt|e|set|None"},
    {"conversions",
     "{{ '42' | int + 1 }} {{ 'x' | int }} {{ '2.5' | float }} {{ 3 | float }} {{ 7 | string ~ '!' }} {{ 3.9 "
     "| int }} {{ 'ab' | list }}",
     R"({})", "43 0 2.5 3.0 7! 3 ['a', 'b']"},
    {"items_filter", "{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", R"({"d": {"z": 1, "a": 2}})",
     "z1a2"},
    {"selectattr_map",
     "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ ms | "
     "rejectattr('role', 'eq', 'user') | list | length }}|{{ ms | selectattr('flag') | "
     "map(attribute='content') | first }}",
     R"({"ms": [{"role":"user","content":"a"},{"role":"assistant","content":"b","flag":true},{"role":"user","content":"c"}]})",
     "a,c|1|b"},
    {"map_filter_name", "{{ ['a', 'b'] | map('upper') | join }}", R"({})", "AB"},
    {"unique_reverse_sort",
     "{{ [3, 1, 3, 2] | unique | list }} {{ [1, 2, 3] | reverse | list }} {{ 'abc' | reverse }} {{ [3, 1, 2] "
     "| sort }} {{ ['b', 'A', 'c'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ms | "
     "sort(attribute='n') | map(attribute='n') | list }}",
     R"({"ms": [{"n": 2}, {"n": 1}]})", "[3, 1, 2] [3, 2, 1] cba [1, 2, 3] ['A', 'b', 'c'] [3, 2, 1] [1, 2]"},
    {"round_abs",
     "{{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 2.1 | round(0, 'ceil') }} {{ -3 | abs }} {{ -2.5 | abs }}",
     R"({})", "2.57 2.0 3.0 3 2.5"},
    {"indent_filter", "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'x\ny' | indent(3, true) }}", R"({})",
     "a\n  b\n\n  c|   x\n   y"},
    {"tojson",
     "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\n' | tojson }}|{{ [1, 2.5, none, true] | tojson }}",
     R"({"d": {"name": "f", "args": {"x": [1, 2]}, "e": {}}})",
     "{\"name\": \"f\", \"args\": {\"x\": [1, 2]}, \"e\": {}}|{\n  \"name\": \"f\",\n  \"args\": {\n    "
     "\"x\": [\n      1,\n      2\n    ]\n  },\n  \"e\": {}\n}|\"é\\\"\\n\"|[1, 2.5, null, true]"},
    {"safe_string", "{{ '<b>' | safe }}", R"({})", "<b>"},
    {"string_methods",
     "{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ "
     "'a,b,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', "
     "'c')) }}|{{ 'abc'.upper() }}|{{ 'ABC'.lower() }}|{{ 'ab cd'.title() }}|{{ 'aXa'.replace('a', 'b') "
     "}}|{{ 'hello'.find('l') }}|{{ 'hello'.count('l') }}|{{ '-'.join(['a', 'b']) }}",
     R"({})", "x|a|x|x|['a', 'b', 'c']|['a', 'b']|True|True|ABC|abc|Ab Cd|bXb|2|2|a-b"},
    {"dict_methods",
     "{{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ "
     "d.get('zz') }}",
     R"({"d": {"a": 1, "b": 2}})", "['a', 'b'] [1, 2] 1 dflt None"},
    {"dict_global", "{{ dict(a=1, b='x') }}", R"({})", "{'a': 1, 'b': 'x'}"},
    {"ws_dash_both_sides", "a  \n  {{- 'b' -}}  \n  c", R"({})", "abc"},
    {"ws_block_dash", "x\n  {%- if true -%}\n  y\n  {%- endif -%}\n  z", R"({})", "xyz"},
    {"ws_trim_lstrip", "<\n  {% if true %}\n  body\n  {% endif %}\n>", R"({})", "<\n  body\n>"},
    {"ws_lstrip_not_for_var", "  {{ 'v' }}\n  {% if true %}x{% endif %}\n", R"({})", "  v\nx"},
    {"ws_plus_disables_lstrip", "  {%+ if true %}x{% endif %}", R"({})", "  x"},
    {"ws_comment", "a\n  {# note #}\nb {#- trimmed -#}   c", R"({})", "a\nbc"},
    {"ws_inline_block_not_stripped", "a  {% if true %}x{% endif %}  b", R"({})", "a  x  b"},
    {"trailing_newline_dropped", "line\n", R"({})", "line"},
    {"multiline_tag", "{{\n  'a'\n  ~ 'b'\n}}", R"({})", "ab"},
    {"string_escapes", "{{ 'tab\\there' }}|{{ \"q'uote\" }}|{{ 'it\\'s' }}|{{ 'nl\\nx' }}", R"({})",
     "tab\there|q'uote|it's|nl\nx"},
    {"dict_literal_in_output", "{{ {'a': {'b': 1}} }}", R"({})", "{'a': {'b': 1}}"},
    {"filter_chain_on_call", "{{ range(3) | list | length }}", R"({})", "3"},
    {"not_precedence", "{{ not x is defined }} {{ not 1 == 2 }}", R"({})", "True True"},
    {"is_defined_on_attr", "{{ m.tool_calls is defined }} {{ m.role is defined }}", R"({"m": {"role": "u"}})",
     "False True"},
    {"loop_previtem", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", R"({})",
     "-2 1-3 2- "},
    {"loop_cycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}", R"({})", "abab"},
    {"str_multiply_and_join_attr", "{{ '-' * 3 }}{{ ms | join('/', attribute='n') }}",
     R"({"ms": [{"n": 1}, {"n": 2}]})", "---1/2"},
    {"format_filter",
     "{{ '%s=%d' | format('k', 3) }}|{{ '%5.2f|%-4s|%04d|%x|%r|%%' | format(3.14159, 'ab', 42, 255, 'q') "
     "}}|{{ '%(a)s-%(b)s' | format(a=1, b='x') }}",
     R"({})", "k=3| 3.14|ab  |0042|ff|'q'|%|1-x"},
    {"percent_operator",
     "{{ '%s and %s' % ('a', 'b') }}|{{ '%d%%' % 50 }}|{{ '%.1e' % 12345.678 }}|{{ '%+d' % 5 }}|{{ '%3s|' % "
     "'é' }}",
     R"({})", "a and b|50%|1.2e+04|+5|  é|"},
    {"chained_compare",
     "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1 != 2 }} {{ 0 <= x < 10 }} {{ 'a' in 'abc' in 'xabcx' }}",
     R"({"x": 5})", "True False True True True"},
    {"edge_semantics",
     "{{ 1 | round }} {{ 2.5 | round }} {{ true is odd }} {{ false is even }} {{ ['a', 'b', 'a'].count('a') "
     "}} {{ nope is iterable }} {{ (2.5)[0] is defined }} {{ {'A': 1} is upper }} {{ true is divisibleby 1 "
     "}}",
     R"({})", "1 2.0 True True 2 True False True True"},
    {"raw_whitespace",
     "a\n  {% raw %}\n  {{ x }}\n  {% endraw %}\nb|{%- raw -%}  k  {%- endraw -%}  |  {%+ raw %}r\n  {%+ "
     "endraw %}|",
     R"({})", "a\n\n  {{ x }}\nb|k|  r\n  |"},
    {"ws_nested_mix",
     "<ul>\n{% for i in range(2) %}\n  {% if i %}\n    <li>{{ i }}</li>\n  {% else %}\n    <li>zero</li>\n  "
     "{%- endif %}\n{% endfor %}\n</ul>\n",
     R"({})", "<ul>\n    <li>zero</li>    <li>1</li>\n</ul>"},
    {"macro_closure_and_scopes",
     "{% for i in range(2) %}{% macro show(p) %}{{ i }}{{ p }}{% endmacro %}{{ show('x') }};{% endfor %}{% "
     "set t %}{% set leak = 1 %}body{% endset %}[{{ t }}][{{ leak }}]{% filter upper %}{% set leak2 = 1 "
     "%}f{% endfilter %}[{{ leak2 }}]",
     R"({})", "0x;1x;[body][]F[]"},
    {"for_else_break_quirk",
     "{% for i in [1, 2] %}{% break %}{% else %}E1{% endfor %}|{% for i in [1, 2] %}{% if i == 2 %}{% "
     "continue %}{% endif %}{% else %}E2{% endfor %}|{% for i in [1] %}{% continue %}{% else %}E3{% endfor "
     "%}",
     R"({})", "E1||E3"},
    {"continue_in_block_set",
     "{% for i in range(3) %}{% set s %}{% if i == 1 %}{% continue %}{% endif %}v{{ i }}{% endset %}[{{ s "
     "}}]{% endfor %}",
     R"({})", "[v0][v2]"},
};

TEST(Jinja, MatchesReferenceJinja2) {
  for (const Case& c : kCases) {
    auto r = render_str(c.tmpl, c.ctx);
    ASSERT_TRUE(r) << c.name << ": " << r.error().message;
    EXPECT_EQ(*r, c.expected) << c.name;
  }
}

// Jinja2 raises on attribute access of an undefined value; chat templates probe optional
// fields (`message.tool_calls`), so here undefined propagates and renders as "".
TEST(Jinja, UndefinedIsLenient) {
  auto r = render_str(
      "[{{ nope }}][{{ nope.attr.deeper }}][{{ nope['x'][0] }}][{{ nope | length }}]"
      "{% if nope.x %}T{% else %}F{% endif %}{% for x in nope %}never{% endfor %}");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "[][][][0]F");
}

TEST(Jinja, GenerationBlockIsTransparent) {
  // transformers' AssistantTracker extension: {% generation %} only marks assistant spans.
  auto r = render_str("{% for m in ms %}{% generation %}<{{ m }}>{% endgeneration %}{% endfor %}",
                      R"({"ms": ["a", "b"]})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "<a><b>");
}

TEST(Jinja, TojsonOptions) {
  auto r = render_str(
      "{{ d | tojson(sort_keys=true) }}|{{ 'é😀' | tojson(ensure_ascii=true) }}|"
      "{{ d | tojson(separators=(',', ':')) }}",
      R"({"d": {"b": 1, "a": [true, null]}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, R"({"a": [true, null], "b": 1}|"\u00e9\ud83d\ude00"|{"b":1,"a":[true,null]})");
}

TEST(Jinja, StrftimeNowFormats) {
  auto r = render_str("{{ strftime_now('%Y') | length }} {{ strftime_now('%d %b %Y') | length }}");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "4 11");
}

void expect_error(const std::string& tmpl, const std::string& needle, const std::string& ctx = "{}") {
  auto r = render_str(tmpl, ctx);
  ASSERT_FALSE(r) << "rendered: " << *r;
  EXPECT_NE(r.error().message.find(needle), std::string::npos)
      << "error '" << r.error().message << "' lacks '" << needle << "'";
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  expect_error("line one\n{{ 'ok' }}\n{% if x %}\nunclosed",
               "line 4, column 9: unexpected end of template, expected '{% endif %}'");
  expect_error("a\nb {{ 1 + }}", "line 2, column 10");
  expect_error("{% for x in y %}\n{% endif %}", "line 2");
  expect_error("{{ 'abc }}", "unterminated string");
  expect_error("x {# never closed", "unterminated comment");
  expect_error("{% frobnicate %}", "unknown or unexpected tag 'frobnicate'");
  expect_error("{% break %}", "outside of a loop");
  expect_error("{{ a ) }}", "unexpected ')'");
  expect_error("{{ x | }}", "expected a filter name");
}

TEST(Jinja, RenderErrorsAreValues) {
  expect_error("{{ x | frobnicate }}", "unknown filter 'frobnicate'");
  expect_error("{{ x is frobnicated }}", "unknown test 'frobnicated'");
  expect_error("a\n{{ raise_exception('Roles must alternate') }}", "Roles must alternate");
  expect_error("a\n{{ raise_exception('boom') }}", "line 2");
  expect_error("{{ 1 / 0 }}", "division by zero");
  expect_error("{{ 1 // 0 }}", "division");
  expect_error("{{ 'a' + 1 }}", "unsupported operand");
  expect_error("{{ 1 < 'a' }}", "not supported");
  expect_error("{{ nofn() }}", "'nofn' is not callable");
  expect_error("{{ [1].nomethod() }}", "no attribute 'nomethod'");
  expect_error("{% for a, b in [1] %}{% endfor %}", "cannot unpack");
  expect_error("{{ range(0, 10, 0) }}", "must not be zero");
  expect_error("{{ 9223372036854775807 + 1 }}", "overflow");
}

TEST(Jinja, RunawayTemplatesAreStopped) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion depth");
  RenderLimits few;
  few.max_loop_iterations = 10000;
  auto loops =
      render_str("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "{}", few);
  ASSERT_FALSE(loops);
  EXPECT_NE(loops.error().message.find("10000 loop iterations"), std::string::npos) << loops.error().message;
  RenderLimits quick;
  quick.max_render_ms = 50;
  auto slow = render_str(
      "{% for i in range(1000) %}{% for j in range(1000) %}{{ [j] | unique | list | sort }}"
      "{% endfor %}{% endfor %}",
      "{}", quick);
  ASSERT_FALSE(slow);
  EXPECT_NE(slow.error().message.find("longer than 50 ms"), std::string::npos) << slow.error().message;
  expect_error("{{ range(100000000) }}", "range too large");
  // Lists and strings built by * or + are bounded before they are built: [x] * n would
  // allocate n values (about 100 bytes each) at once.
  expect_error("{{ ([1] * 30000000) | length }}", "list grew too large");
  expect_error("{{ ([1, 2] * 60000) | length }}", "list grew too large");
  expect_error("{% set l = range(90000) | list %}{{ (l + l) | length }}", "list grew too large");
  expect_error("{{ ('ab' * 9000000) | length }}", "string grew too large");
  expect_error("{{ (2 * 'ab' * 4611686018427387904) | length }}", "grew too large");  // no overflow
  // Joins of joins multiply lengths; iterating the result character by character is refused.
  expect_error("{{ 'abcdefghij' | join('x' * 200) | join('y' * 600) | join(', ') }}", "too long to iterate");
  {
    auto ok = render_str("{{ ([1, 2] * 3) | length }} {{ ('ab' * 3) }} {{ (3 * [0]) | length }}");
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(*ok, "6 ababab 3");
  }
  RenderLimits small;
  small.max_output_bytes = 1000;
  auto r = render_str("{% for i in range(100) %}0123456789abcdef{% endfor %}", "{}", small);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("output exceeds"), std::string::npos);
  // Parse-time nesting cap (would otherwise recurse until the stack overflows).
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  auto t = parse_template(deep);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("nested too deeply"), std::string::npos);
  std::string deep_ifs;
  for (int i = 0; i < 1000; ++i) deep_ifs += "{% if true %}";
  EXPECT_FALSE(parse_template(deep_ifs));
  // Reference cycles are refused (shared ownership would leak them; printing would not end).
  expect_error("{% set l = [1] %}{% set _ = l.append(l) %}", "itself");
  expect_error("{% set l = [1] %}{% set m = [l] %}{% set _ = l.append(m) %}", "itself");
  expect_error("{% set ns = namespace(a=1) %}{% set ns.self = [ns] %}", "itself");
  expect_error("{% set d = {} %}{% set _ = d.update(x=[d]) %}", "itself");
  // Exponentially shared data (2^40 leaves when expanded) is cut off, not expanded forever.
  const std::string grow =
      "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}";
  auto wide = render_str(grow + "{{ ns.l | tojson }}");
  ASSERT_FALSE(wide);  // JSON text is capped while it is built, then exceeds the output limit
  EXPECT_NE(wide.error().message.find("output exceeds"), std::string::npos) << wide.error().message;
  auto eq = render_str(
      grow + "{{ ns.l == ns.l }} {{ ns.l == [ns.l[0], ns.l[1]] }} {{ (ns.l | string | length) > 0 }}");
  ASSERT_TRUE(eq) << eq.error().message;
  EXPECT_EQ(*eq, "True True True");
}

// Every prefix of a real template must parse-fail or render cleanly; never crash or hang.
TEST(Jinja, TruncatedTemplatesNeverCrash) {
  const std::string tmpl =
      "{%- set ns = namespace(sys='') -%}{% for m in messages %}{%- if m.role == 'system' -%}"
      "{% set ns.sys = m.content | trim %}{% elif m['role'] in ['user', 'assistant'] %}"
      "{{ '<|' ~ m.role ~ '|>\\n' + (m.content if m.content is string else m.content | tojson) }}"
      "{# comment #}{{- (loop.index0 % 2 == 0) | string -}}{% endif %}{% else %}{{ 'none' }}{% endfor %}"
      "{% macro m(a, b=[1, {'k': 2}]) %}{{ a ~ b[1].k }}{% endmacro %}{{ m(ns.sys[::-1]) }}";
  const std::string ctx =
      R"({"messages": [{"role": "system", "content": " s "}, {"role": "user", "content": "u"}]})";
  auto full = render_str(tmpl, ctx);
  ASSERT_TRUE(full) << full.error().message;
  EXPECT_EQ(*full, "<|user|>\nuFalses2");  // as Jinja2 renders it
  int parsed = 0;
  for (size_t n = 0; n <= tmpl.size(); ++n) {
    auto r = render_str(tmpl.substr(0, n), ctx);
    if (r) {
      ++parsed;
    } else {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  EXPECT_GT(parsed, 0);
  // Byte flips: replace each position with characters that matter to the lexer.
  for (size_t n = 0; n < tmpl.size(); n += 3) {
    for (char c : std::string("{}%#-'\"()[]|.\n")) {
      std::string mutated = tmpl;
      mutated[n] = c;
      auto r = render_str(mutated, ctx);
      if (!r) {
        EXPECT_FALSE(r.error().message.empty());
      }
    }
  }
}

}  // namespace
}  // namespace kvserve::jinja
