// The Gemma-3-270M GGUF (scripts/fetch_model.sh gemma3) and its tokenizer, opened once
// per test binary: the 262,144-token vocabulary takes a few hundred ms to load.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::test {

// Null when the model has not been downloaded (or does not open).
inline const GgufFile* gemma3_gguf() {
  static std::unique_ptr<GgufFile> file = [] {
    std::unique_ptr<GgufFile> f;
    if (!file_exists(gemma3_path())) return f;
    if (auto r = GgufFile::open(gemma3_path())) f = std::move(*r);
    return f;
  }();
  return file.get();
}

inline std::shared_ptr<const Tokenizer> gemma3_tokenizer_shared() {
  static std::shared_ptr<const Tokenizer> tok = [] {
    std::shared_ptr<const Tokenizer> t;
    if (const GgufFile* f = gemma3_gguf())
      if (auto r = Tokenizer::from_gguf(*f)) t = std::move(*r);
    return t;
  }();
  return tok;
}
inline const Tokenizer* gemma3_tokenizer() {
  return gemma3_tokenizer_shared().get();
}

// The model (weights mapped once per test binary); null when not downloaded.
inline std::shared_ptr<const Model> gemma3_model_shared() {
  static std::shared_ptr<const Model> model = [] {
    std::shared_ptr<const Model> m;
    if (!file_exists(gemma3_path())) return m;
    auto r = Model::load(gemma3_path());
    if (r)
      m = std::move(*r);
    else
      ADD_FAILURE() << r.error().message;
    return m;
  }();
  return model;
}

}  // namespace kvserve::test

#define GEMMA3_OR_SKIP(var)                                              \
  const ::kvserve::Tokenizer* var = ::kvserve::test::gemma3_tokenizer(); \
  if (!var) KVSERVE_MISSING_ASSET(::kvserve::test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)")
