// `kvserve info --model FILE`: architecture, hyper-parameters, tokenizer, tensors.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "gguf/gguf_file.h"

namespace {

int run_info(const std::string& path) {
  auto file = kvserve::GgufFile::open(path);
  if (!file) {
    std::fprintf(stderr, "kvserve info: %s\n", file.error().message.c_str());
    return 1;
  }
  // Full report is built in gguf/model_info (see issue 2).
  std::printf("file: %s\nGGUF version: %u\ntensors: %zu\n", path.c_str(), (*file)->version(),
              (*file)->tensors().size());
  return 0;
}

const kvserve::cli::Registrar reg{"info", "Print a GGUF model's architecture, hyper-parameters and tensors",
                                  [](CLI::App& app) {
                                    auto path = std::make_shared<std::string>();
                                    app.add_option("-m,--model", *path, "GGUF file")->required();
                                    return [path] { return run_info(*path); };
                                  }};

}  // namespace
