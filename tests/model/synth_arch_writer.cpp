// Writes the synthetic architecture models of synth_arch_models.h to DIR/<name>.gguf and
// their golden prompts to DIR/<name>.prompts (one prompt per line, ids separated by
// spaces), for scripts/make_synth_golden.sh.
#include <cstdio>
#include <fstream>
#include <string>

#include "synth_arch_models.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: synth_arch_writer DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (const auto& s : kvserve::test::synth_archs()) {
    const auto bytes = kvserve::test::synth_arch_gguf(s);
    std::ofstream(dir + "/" + s.name + ".gguf", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    std::ofstream pr(dir + "/" + s.name + ".prompts");
    for (const auto& p : kvserve::test::synth_golden_prompts(s.vocab)) {
      for (size_t i = 0; i < p.size(); ++i) pr << (i ? " " : "") << p[i];
      pr << "\n";
    }
    std::printf("%s/%s.gguf\n", dir.c_str(), s.name.c_str());
  }
  return 0;
}
