// HTTP routing, auth, limits and lifecycle. Generation does the per-request work.
#include "server/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "core/log.h"
#include "server/generation.h"
#include "server/openai_parse.h"
#include "server/openai_response.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::server {

namespace {

// httplib's ThreadPool has a fixed size, and every open connection (a stream, or an idle
// keep-alive one) holds a worker: with 8 workers the 9th client would wait, /health too.
// This pool adds a thread whenever a job would otherwise queue, up to `max`.
class GrowingPool : public httplib::TaskQueue {
 public:
  explicit GrowingPool(size_t max) : max_(max) {}
  ~GrowingPool() override = default;

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_)
      threads_.emplace_back([this] { work(); });
    else
      cv_.notify_one();
  }

  void shutdown() override {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) t.join();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return !jobs_.empty() || stop_; });
      --idle_;
      if (jobs_.empty()) return;  // stopping
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

// The charset parameter also keeps httplib from gzip-compressing responses (it matches
// "application/json" exactly): compression would buffer the keep-alive bytes of a
// chunked body, and on loopback it only costs CPU.
constexpr const char* kJson = "application/json; charset=utf-8";

void send_error(httplib::Response& res, const ApiError& err, int retry_after_s = 0) {
  res.status = err.status;
  if (retry_after_s > 0) res.set_header("Retry-After", std::to_string(retry_after_s));
  res.set_content(error_body(err), kJson);
}

ApiError make_error(int status, std::string message, std::string type = "invalid_request_error",
                    std::string code = "") {
  return ApiError{status, std::move(message), std::move(type), "", std::move(code)};
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

struct HttpServer::Impl {
  Backend& backend;
  ServerOptions opts;
  ServerMetrics metrics;
  ParseLimits limits;
  httplib::Server svr;
  int listen_fd = -1;
  int bound_port = -1;
  std::atomic<bool> draining{false};

  std::mutex active_mu;
  std::unordered_map<Generation*, std::weak_ptr<Generation>> active;  // guarded by active_mu

  Impl(Backend& b, ServerOptions o)
      : backend(b),
        opts(std::move(o)),
        metrics(opts.model_names.empty() ? std::string("kvserve") : opts.model_names.front(),
                b.max_model_len()) {
    const BackendStats st = b.stats();  // (never waits for a step)
    metrics.kv_cache_dtype = st.kv_cache_dtype;
    metrics.kv_cache_block_size = st.kv_cache_block_size;
    metrics.kv_cache_blocks = st.kv_cache_blocks;
    limits.model_names = opts.model_names;
    limits.n_vocab = b.tokenizer().n_vocab();
    limits.max_model_len = b.max_model_len();
    limits.max_n = opts.max_n;
    limits.max_logprobs = opts.max_logprobs;
    routes();
  }

  void track(const std::shared_ptr<Generation>& g) {
    std::lock_guard<std::mutex> lock(active_mu);
    active.emplace(g.get(), g);
  }
  void untrack(Generation* g) {
    std::lock_guard<std::mutex> lock(active_mu);
    active.erase(g);
  }
  size_t num_active() {
    std::lock_guard<std::mutex> lock(active_mu);
    return active.size();
  }

  void routes() {
    const size_t max_threads = size_t(std::max(8, opts.max_threads));
    svr.new_task_queue = [max_threads] { return new GrowingPool(max_threads); };
    svr.set_payload_max_length(opts.max_body_bytes);
    // httplib polls an idle keep-alive connection every ~10 ms and only notices a stop
    // after its timeout, so keep it short: it bounds shutdown time and idle wake-ups.
    svr.set_keep_alive_timeout(2);
    svr.set_read_timeout(30);
    svr.set_write_timeout(30);
    // Small writes (SSE events, a response's header then body) must leave at once:
    // with Nagle's algorithm each waits for the peer's delayed ACK (~40 ms).
    // Accepted sockets inherit TCP_NODELAY from the listening one.
    svr.set_tcp_nodelay(true);
    svr.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
      listen_fd = sock;
    });

    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opts.api_key.empty() || req.path.rfind("/v1/", 0) != 0)
        return httplib::Server::HandlerResponse::Unhandled;
      if (constant_time_equal(req.get_header_value("Authorization"), "Bearer " + opts.api_key))
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res,
                 make_error(401, "Invalid or missing API key.", "invalid_request_error", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg = res.status == 404   ? "Not found: " + req.path
                        : res.status == 413 ? "Request body too large."
                        : res.status == 405 ? "Method not allowed."
                                            : "HTTP error " + std::to_string(res.status) + ".";
      res.set_content(error_body(make_error(res.status, msg)), kJson);
    });
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, make_error(500, "Internal server error: " + what, "internal_server_error"));
    });

    // /health answers from this thread alone: no engine call, no lock.
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (draining.load()) {
        res.status = 503;
        res.set_content("{\"status\":\"shutting down\"}", kJson);
        return;
      }
      res.set_content("{\"status\":\"ok\"}", kJson);
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      BackendStats s = backend.stats();
      metrics.num_requests_running.set(s.num_running);
      metrics.num_requests_waiting.set(s.num_waiting);
      metrics.kv_cache_usage_perc.set(s.kv_cache_usage);
      metrics.num_preemptions.set(s.num_preemptions);
      metrics.engine_generation_tokens.set(s.generated_tokens);
      metrics.spec_drafts.set(s.spec_drafts);
      metrics.spec_draft_tokens.set(s.spec_draft_tokens);
      metrics.spec_accepted_tokens.set(s.spec_accepted_tokens);
      const size_t positions = std::min(s.spec_accepted_per_pos.size(), metrics.spec_accepted_per_pos.size());
      for (size_t i = 0; i < positions; ++i) metrics.spec_accepted_per_pos[i].set(s.spec_accepted_per_pos[i]);
      metrics.spec_positions.store(int(positions), std::memory_order_relaxed);
      res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(models_body(opts.model_names, unix_now(), backend.max_model_len(), opts.config), kJson);
    });
    // vLLM's /tokenize and /detokenize, for clients that count or build token prompts.
    // With "messages" instead of "prompt": the tokens the chat endpoint would build.
    svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      std::vector<int32_t> ids;
      if (!j.is_discarded() && j.is_object() && j.contains("messages")) {
        ParseResult parsed = parse_chat_request(req.body, limits);
        if (const ApiError* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
        std::string text;
        if (auto err = chat_tokens(std::get<ApiRequest>(parsed), ids, text)) return send_error(res, *err);
      } else {
        if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
          return send_error(res, ApiError{400, "'prompt' (a string) or 'messages' is required.",
                                          "invalid_request_error", "prompt", ""});
        bool add_special = j.value("add_special_tokens", true);
        ids = backend.tokenizer().encode(j["prompt"].get<std::string>(), add_special, true);
      }
      nlohmann::json out = {
          {"tokens", ids}, {"count", ids.size()}, {"max_model_len", backend.max_model_len()}};
      res.set_content(out.dump(), kJson);
    });
    svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      std::vector<int32_t> ids;
      bool ok = !j.is_discarded() && j.is_object() && j.contains("tokens") && j["tokens"].is_array();
      for (const auto& t : ok ? j["tokens"] : nlohmann::json::array()) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= limits.n_vocab)
          ok = false;
        else
          ids.push_back(int32_t(t.get<int64_t>()));
      }
      if (!ok)
        return send_error(res, ApiError{400, "'tokens' must be a list of token ids.", "invalid_request_error",
                                        "tokens", ""});
      nlohmann::json out = {{"prompt", backend.tokenizer().decode(ids)}};
      res.set_content(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kJson);
    });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_generate(req, res, ApiKind::Completion);
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_generate(req, res, ApiKind::Chat);
    });
  }

  // A chat request's prompt tokens and text. The template writes BOS and role markers
  // itself, as special-token text; the messages' text never becomes a control token.
  std::optional<ApiError> chat_tokens(const ApiRequest& ar, std::vector<int32_t>& ids, std::string& text) {
    if (!opts.chat) return make_error(400, opts.no_chat_reason, "invalid_request_error", "no_chat_template");
    Result<ChatPrompt> prompt = opts.chat(ar.messages, ar.add_generation_prompt);
    if (!prompt)
      return ApiError{400, "Chat template error: " + prompt.error().message, "invalid_request_error",
                      "messages", ""};
    ids = backend.tokenizer().encode(prompt->text, false, true,
                                     opts.allow_special_tokens_in_content ? nullptr : &prompt->untrusted);
    text = std::move(prompt->text);
    return std::nullopt;
  }

  // Tokenizes and checks every prompt; an error is returned as is.
  std::optional<ApiError> prepare(const ApiRequest& ar, std::vector<PreparedPrompt>& out) {
    const Tokenizer& tok = backend.tokenizer();
    auto add = [&](std::vector<int32_t> ids, std::string text) -> std::optional<ApiError> {
      if (ids.empty()) return ApiError{400, "The prompt is empty.", "invalid_request_error", "prompt", ""};
      ApiRequest copy;
      copy.kind = ar.kind;
      copy.params = ar.params;
      copy.max_tokens_given = ar.max_tokens_given;
      if (auto err = resolve_max_tokens(copy, int(ids.size()), backend.max_model_len())) return err;
      out.push_back(PreparedPrompt{std::move(ids), std::move(text), copy.params});
      return std::nullopt;
    };
    if (ar.kind == ApiKind::Chat) {
      std::vector<int32_t> ids;
      std::string text;
      if (auto err = chat_tokens(ar, ids, text)) return err;
      return add(std::move(ids), std::move(text));
    }
    for (const Prompt& p : ar.prompts) {
      std::optional<ApiError> err =
          p.is_text() ? add(tok.encode(p.text(), true, true), p.text()) : add(p.ids(), tok.decode(p.ids()));
      if (err) return err;
    }
    return std::nullopt;
  }

  void handle_generate(const httplib::Request& req, httplib::Response& res, ApiKind kind) {
    const Clock::time_point arrival = Clock::now();
    if (draining.load()) {
      send_error(res, make_error(503, "The server is shutting down.", "server_error", "shutting_down"), 5);
      return;
    }
    ParseResult parsed = kind == ApiKind::Chat ? parse_chat_request(req.body, limits)
                                               : parse_completion_request(req.body, limits);
    if (is_error(parsed)) return send_error(res, std::get<ApiError>(parsed));
    const ApiRequest& ar = std::get<ApiRequest>(parsed);
    if (backend.stats().num_waiting >= opts.max_waiting) {
      send_error(res,
                 make_error(429, "The server is overloaded: too many requests are waiting.",
                            "server_overloaded", "queue_full"),
                 1);
      return;
    }
    std::vector<PreparedPrompt> prompts;
    if (auto err = prepare(ar, prompts)) return send_error(res, *err);

    ResponseMeta meta{make_response_id(kind), unix_now(), ar.model};
    auto gen =
        std::make_shared<Generation>(backend, metrics, ar, std::move(prompts), std::move(meta), arrival);
    if (Status st = gen->start(); !st) {
      // Shutdown began after the check above: the engine refused for that, not for the request.
      if (draining.load())
        return send_error(
            res, make_error(503, "The server is shutting down.", "server_error", "shutting_down"), 5);
      return send_error(res, make_error(400, st.error().message));
    }
    track(gen);
    if (draining.load()) gen->abort();  // shutdown's sweep of in-flight requests may have missed it

    const auto idle = std::chrono::milliseconds(std::max(10, opts.keepalive_ms));
    if (!ar.stream) {
      if (gen->wait_finished(idle)) {
        untrack(gen.get());
        res.set_content(gen->body(), kJson);
        return;
      }
      // Still running after a keep-alive period: send the body chunked, preceded by a
      // space each period. JSON allows leading whitespace, and the writes are how a
      // client that gave up is noticed (its request is then aborted).
      res.set_chunked_content_provider(
          kJson,
          [gen, idle](size_t, httplib::DataSink& sink) {
            if (!gen->wait_finished(idle)) return sink.write(" ", 1);
            std::string body = gen->body();
            if (!sink.write(body.data(), body.size())) return false;
            sink.done();
            return true;
          },
          [this, gen](bool success) {
            if (!success || !gen->finished()) gen->abandon();
            untrack(gen.get());
          });
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [gen, idle](size_t, httplib::DataSink& sink) {
          std::string out;
          Generation::Poll st = gen->next_events(out, idle);
          // An idle stream sends an SSE comment: clients skip it, and writing it is how a
          // vanished client is noticed while its request still waits in the queue.
          if (st == Generation::Poll::Idle) out = ": keep-alive\n\n";
          if (!sink.write(out.data(), out.size())) return false;
          if (st == Generation::Poll::Done) sink.done();
          return true;
        },
        [this, gen](bool success) {
          if (!success || !gen->finished()) gen->abandon();
          untrack(gen.get());
        });
  }
};

HttpServer::HttpServer(Backend& backend, ServerOptions options)
    : impl_(std::make_unique<Impl>(backend, std::move(options))) {}

HttpServer::~HttpServer() = default;

Status HttpServer::bind() {
  Impl& s = *impl_;
  if (s.opts.port == 0) {
    s.bound_port = s.svr.bind_to_any_port(s.opts.host);
    if (s.bound_port < 0) return Error{"cannot bind " + s.opts.host + " to a free port"};
  } else {
    if (!s.svr.bind_to_port(s.opts.host, s.opts.port))
      return Error{"cannot bind " + s.opts.host + ":" + std::to_string(s.opts.port)};
    s.bound_port = s.opts.port;
  }
  // httplib listens with a backlog of 5; a burst of clients would see SYN retries
  // (1 s each). Listening again on a bound socket only enlarges the backlog.
  if (s.listen_fd >= 0) ::listen(s.listen_fd, 4096);
  return ok_status();
}

int HttpServer::port() const {
  return impl_->bound_port;
}

bool HttpServer::run() {
  return impl_->svr.listen_after_bind();
}

void HttpServer::shutdown() {
  Impl& s = *impl_;
  if (s.draining.exchange(true)) return;
  std::vector<std::shared_ptr<Generation>> gens;
  {
    std::lock_guard<std::mutex> lock(s.active_mu);
    for (auto& [p, w] : s.active)
      if (auto g = w.lock()) gens.push_back(std::move(g));
  }
  log_info("shutting down: aborting {} in-flight request(s)", gens.size());
  for (auto& g : gens) g->abort();
  gens.clear();
  // Let the aborted streams write their last chunk and [DONE] before the listener goes.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (s.num_active() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s.svr.stop();
}

ServerMetrics& HttpServer::metrics() {
  return impl_->metrics;
}

}  // namespace kvserve::server
