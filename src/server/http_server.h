// The OpenAI-compatible HTTP front end on cpp-httplib:
//   POST /v1/completions, POST /v1/chat/completions (JSON or SSE streaming),
//   GET /v1/models, GET /health, GET /metrics (Prometheus).
// Each connection runs on its own thread (a growing pool), so a long stream never holds
// up /health; request threads talk to the engine only through Backend's queue-and-notify
// calls. A stream's failed write (client gone) aborts its engine request.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/text_range.h"
#include "server/backend.h"
#include "server/metrics.h"
#include "server/openai_types.h"

namespace kvserve::server {

// A chat prompt and the bytes of it that came from the request's messages: those are
// tokenized as plain text, so content can never forge a control token (jinja/taint.h).
struct ChatPrompt {
  std::string text;
  TextRanges untrusted;
};
// Renders chat messages to a prompt; an error becomes a 400 for the request.
using ChatRenderer =
    std::function<Result<ChatPrompt>(const std::vector<ChatMessage>&, bool add_generation_prompt)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                       // 0 = any free port (see HttpServer::port())
  std::string api_key;                   // non-empty: /v1/* needs "Authorization: Bearer <key>"
  std::vector<std::string> model_names;  // served names; the first is the default
  ChatRenderer chat;                     // empty: /v1/chat/completions answers 400
  // Read control tokens written in chat message content too (the behaviour of vLLM and
  // llama-server: a user can close their turn and open a system one). Off by default.
  bool allow_special_tokens_in_content = false;
  std::string no_chat_reason = "This model has no chat template; start the server with --chat-template FILE.";
  size_t max_body_bytes = size_t(8) << 20;
  int max_waiting = 512;   // engine queue length at which new requests get 429
  int max_threads = 1024;  // connection threads at most (idle keep-alive ones included)
  int max_n = 16;
  int max_logprobs = 20;
  int keepalive_ms = 1000;  // idle stream: an SSE comment this often, which also detects a gone client
  nlohmann::json config;    // the resolved engine settings, shown in /v1/models as "kvserve_config"
};

class HttpServer {
 public:
  HttpServer(Backend& backend, ServerOptions options);
  ~HttpServer();

  // Binds the listening socket; afterwards port() is the real port.
  Status bind();
  int port() const;
  // Serves until shutdown(); returns false if the loop failed.
  bool run();
  // Graceful: refuse new requests (503), abort every in-flight generation, let their
  // streams send their final chunks, then stop the listener. Safe from any thread.
  void shutdown();

  ServerMetrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvserve::server
