// `kvserve serve --model FILE`: the OpenAI-compatible HTTP server (docs/server.md).
// SIGINT / SIGTERM shut it down gracefully: new requests get 503, in-flight ones are
// aborted and their streams closed properly, then the engine stops.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "cli/command.h"
#include "cli/engine_options.h"
#include "core/log.h"
#include "gguf/gguf_file.h"
#include "jinja/chat_template.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "server/engine_backend.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace {

struct ServeOpts {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::string chat_template;
  bool allow_special_tokens_in_content = false;
  std::string served_model_name;
  kvserve::EngineConfig engine;  // filled by add_engine_options()
  kvserve::cli::Mode mode = kvserve::cli::Mode::Balanced;
  bool print_config = false;
  int max_waiting = 512;
};

int run_serve(const ServeOpts& o) {
  using namespace kvserve;
  // Every thread created from here on inherits this mask, so only the waiter thread
  // below ever receives the shutdown signals. SIGPIPE from a vanished client is ignored:
  // the failed write is handled where it happens.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto model = Model::load(o.model);
  if (!model) {
    std::fprintf(stderr, "kvserve serve: %s\n", model.error().message.c_str());
    return 1;
  }
  std::shared_ptr<const Model> shared_model = std::move(*model);
  auto tok = Tokenizer::from_gguf(shared_model->gguf());
  if (!tok) {
    std::fprintf(stderr, "kvserve serve: tokenizer: %s\n", tok.error().message.c_str());
    return 1;
  }
  std::shared_ptr<const Tokenizer> shared_tok = std::move(*tok);

  // The chat-template layer takes strings; reading them from the model is this step's job.
  const GgufFile& meta = shared_model->gguf();
  auto tmpl = ChatTemplate::resolve(o.chat_template, meta.get_string("tokenizer.chat_template"),
                                    meta.get_string("general.architecture").value_or(""));
  if (!tmpl) {
    std::fprintf(stderr, "kvserve serve: chat template: %s\n", tmpl.error().message.c_str());
    return 1;
  }
  auto chat = std::make_shared<ChatTemplate>(std::move(*tmpl));

  EngineConfig cfg = o.engine;
  cfg.model_path = o.model;
  auto engine = Engine::create(cfg, shared_model, shared_tok);
  if (!engine) {
    std::fprintf(stderr, "kvserve serve: %s\n", engine.error().message.c_str());
    return 1;
  }
  // The configuration as resolved (mode preset, flags, sizes chosen at creation).
  const nlohmann::json resolved = cli::engine_config_json((*engine)->config(), o.mode);
  if (o.print_config) {
    std::printf("%s\n", resolved.dump(2).c_str());
    return 0;
  }
  log_info("serve: {}", resolved.dump());
  server::EngineBackend backend(std::move(*engine));

  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = o.api_key;
  so.max_waiting = o.max_waiting;
  so.config = resolved;
  so.model_names = {o.served_model_name.empty() ? std::filesystem::path(o.model).stem().string()
                                                : o.served_model_name};
  const std::string bos = shared_tok->bos_id() >= 0 ? shared_tok->token_text(shared_tok->bos_id()) : "";
  const std::string eos = shared_tok->eos_id() >= 0 ? shared_tok->token_text(shared_tok->eos_id()) : "";
  so.chat = [chat, bos, eos](const std::vector<server::ChatMessage>& msgs, bool add_generation_prompt) {
    std::vector<ChatMessage> m;
    m.reserve(msgs.size());
    for (const auto& x : msgs) m.push_back({x.role, x.content});
    auto r = chat->render_prompt(m, add_generation_prompt, bos, eos);
    if (!r) return Result<server::ChatPrompt>(r.error());
    return Result<server::ChatPrompt>(server::ChatPrompt{std::move(r->text), std::move(r->untrusted)});
  };
  so.allow_special_tokens_in_content = o.allow_special_tokens_in_content;

  if (o.api_key.empty() && o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1")
    log_warn("listening on {} without --api-key: anyone who can reach it can use the model", o.host);
  server::HttpServer http(backend, so);
  if (auto st = http.bind(); !st) {
    std::fprintf(stderr, "kvserve serve: %s\n", st.error().message.c_str());
    return 1;
  }
  std::printf("kvserve: serving %s (chat template: %s, context %d) on http://%s:%d\n",
              so.model_names[0].c_str(), chat->origin_name(), backend.max_model_len(), o.host.c_str(),
              http.port());
  std::fflush(stdout);

  // The first SIGINT/SIGTERM starts a graceful shutdown; a second one exits at once.
  // SIGUSR1 comes from this function when the server has stopped.
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGUSR1) return;
    log_info("signal {}: shutting down (again to exit now)", sig);
    std::thread shutter([&] { http.shutdown(); });
    sigwait(&sigs, &sig);
    if (sig != SIGUSR1) {
      log_warn("signal {}: exiting without finishing", sig);
      std::_Exit(1);
    }
    shutter.join();
  });
  bool ok = http.run();
  pthread_kill(waiter.native_handle(), SIGUSR1);  // no-op if it already returned
  waiter.join();
  backend.stop();
  return ok ? 0 : 1;
}

const kvserve::cli::Registrar reg{
    "serve", "Serve a model over an OpenAI-compatible HTTP API", [](CLI::App& app) {
      auto o = std::make_shared<ServeOpts>();
      app.add_option("-m,--model", o->model, "GGUF model file")->required();
      app.add_option("--host", o->host, "Address to bind (default 127.0.0.1: loopback only)");
      app.add_option("--port", o->port, "Port (0 = any free port, printed at start)");
      app.add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on /v1/*");
      app.add_option("--chat-template", o->chat_template, "Jinja chat template file (default: the model's)");
      app.add_flag("--allow-special-tokens-in-content", o->allow_special_tokens_in_content,
                   "Read control tokens (<|im_end|>, <start_of_turn>...) written in chat message content, "
                   "as vLLM and llama-server do: a user can then close their turn and open a system one. "
                   "Default: content is always plain text; only the chat template writes control tokens");
      app.add_option("--served-model-name", o->served_model_name,
                     "Model name in the API (default: file stem)");
      kvserve::cli::add_engine_options(app, o->engine);
      kvserve::cli::add_mode_option(app, o->mode);
      app.add_flag("--print-config", o->print_config,
                   "Print the resolved configuration (mode preset, flags, KV-cache size) as JSON and exit");
      app.add_option("--max-waiting", o->max_waiting, "Queued requests at which new ones get 429");
      return [o, &app] {
        kvserve::cli::apply_mode(app, o->mode, o->engine);
        return run_serve(*o);
      };
    }};

}  // namespace
