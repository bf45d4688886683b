// `kvserve tokenize --model FILE [--no-bos] [--special] [--file F | --prompt TEXT] [--pieces]`:
// tokenizes text (from F, --prompt or stdin, taken byte for byte) with the model's
// tokenizer and prints the ids space-separated on one line; --pieces adds one line per
// token with its id, vocabulary text and decoded bytes.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "cli/command.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace {

struct Opts {
  std::string model;
  std::string file;
  std::string prompt;
  bool no_bos = false;
  bool special = false;
  bool pieces = false;
};

// Printable form of arbitrary bytes: C-style escapes for control and non-UTF-8 bytes.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02X", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

int run_tokenize(const Opts& o) {
  auto file = kvserve::GgufFile::open(o.model);
  if (!file) {
    std::fprintf(stderr, "kvserve tokenize: %s\n", file.error().message.c_str());
    return 1;
  }
  auto tok = kvserve::Tokenizer::from_gguf(**file);
  if (!tok) {
    std::fprintf(stderr, "kvserve tokenize: %s\n", tok.error().message.c_str());
    return 1;
  }

  std::string text;
  if (!o.prompt.empty()) {
    text = o.prompt;
  } else if (!o.file.empty()) {
    std::ifstream in(o.file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "kvserve tokenize: cannot open %s\n", o.file.c_str());
      return 1;
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  }

  const auto ids = (*tok)->encode(text, /*add_special=*/!o.no_bos, /*parse_special=*/o.special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
  if (o.pieces) {
    for (int32_t id : ids) {
      std::printf("%6d  %-24s %s\n", id, quoted((*tok)->token_text(id)).c_str(),
                  quoted((*tok)->token_to_piece(id)).c_str());
    }
  }
  return 0;
}

const kvserve::cli::Registrar reg{
    "tokenize", "Print the token ids of text (stdin, --file or --prompt) under a model's tokenizer",
    [](CLI::App& app) {
      auto o = std::make_shared<Opts>();
      app.add_option("-m,--model", o->model, "GGUF file")->required();
      app.add_option("-f,--file", o->file, "read the text from this file (default: stdin)");
      app.add_option("-p,--prompt", o->prompt, "the text itself");
      app.add_flag("--no-bos", o->no_bos, "do not add BOS/EOS even if the model asks for them");
      app.add_flag("--special", o->special, "parse special tokens (e.g. <|im_start|>) written in the text");
      app.add_flag("--pieces", o->pieces, "also print each token's vocabulary text and bytes");
      return [o] { return run_tokenize(*o); };
    }};

}  // namespace
