// kvserve: one binary, one subcommand per src/cli/cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <exception>

#include "cli/command.h"

namespace kvserve::cli {
std::vector<CommandSpec>& command_registry() {
  static std::vector<CommandSpec> registry;
  return registry;
}
}  // namespace kvserve::cli

int main(int argc, char** argv) {
  using namespace kvserve::cli;
  CLI::App app{"kvserve: LLM inference and serving engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvserve 0.1.0");
  auto& registry = command_registry();
  std::sort(registry.begin(), registry.end(),
            [](const CommandSpec& a, const CommandSpec& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, RunFn>> commands;
  for (auto& spec : registry) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.help);
    commands.emplace_back(sub, spec.setup(*sub));
  }
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvserve: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
