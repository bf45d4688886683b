// Subcommand registry for the single `kvserve` binary. Each src/cli/cmd_*.cpp defines
//   static const kvserve::cli::Registrar reg{"name", "help", [](CLI::App& app) {
//     auto opts = std::make_shared<Opts>();  /* app.add_option(...) */
//     return [opts] { return run(*opts); };  // exit code
//   }};
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace kvserve::cli {

using RunFn = std::function<int()>;
using SetupFn = std::function<RunFn(CLI::App&)>;

struct CommandSpec {
  std::string name;
  std::string help;
  SetupFn setup;
};

std::vector<CommandSpec>& command_registry();

struct Registrar {
  Registrar(std::string name, std::string help, SetupFn setup) {
    command_registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

}  // namespace kvserve::cli
