// The HTTP server end to end in-process: the real engine on stories260K behind
// EngineBackend, HttpServer on a free loopback port, and httplib's client.
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/test_paths.h"
#include "kvserve/engine.h"
#include "server/engine_backend.h"

namespace kvserve::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Sits between the server and the real EngineBackend: records which ids the server
// aborts and what the engine delivered per submission, and can hold the engine thread
// on every delta, which makes a long request slow enough that an engine-side abort
// cannot be mistaken for the request finishing by itself.
class RecordingBackend final : public Backend {
 public:
  struct Record {
    uint64_t id = 0;
    size_t tokens = 0;          // generated tokens the engine delivered
    std::string finish_reason;  // of the engine's final delta
  };

  explicit RecordingBackend(Backend& inner) : inner_(inner) {}

  void set_delta_delay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }
  std::vector<uint64_t> aborted() const {
    std::lock_guard<std::mutex> lock(mu_);
    return aborted_;
  }
  std::vector<Record> records() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Record> out;
    for (const auto& r : records_) out.push_back(*r);
    return out;
  }

  Result<std::vector<uint64_t>> submit(std::vector<Submission> subs) override {
    std::vector<std::shared_ptr<Record>> recs;
    for (Submission& sub : subs) {
      auto rec = std::make_shared<Record>();
      recs.push_back(rec);
      sub.on_delta = [this, rec, inner = std::move(sub.on_delta)](GenDelta&& d) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          rec->tokens += d.token_ids.size();
          if (!d.finish_reason.empty()) rec->finish_reason = d.finish_reason;
        }
        if (const int64_t ms = delay_ms_.load(); ms > 0 && d.finish_reason.empty())
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        inner(std::move(d));
      };
    }
    auto ids = inner_.submit(std::move(subs));
    if (ids) {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < recs.size(); ++i) {
        recs[i]->id = (*ids)[i];
        records_.push_back(recs[i]);
      }
    }
    return ids;
  }
  void abort(uint64_t id) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborted_.push_back(id);
    }
    inner_.abort(id);
  }
  BackendStats stats() const override { return inner_.stats(); }
  const Tokenizer& tokenizer() const override { return inner_.tokenizer(); }
  int max_model_len() const override { return inner_.max_model_len(); }

 private:
  Backend& inner_;
  std::atomic<int64_t> delay_ms_{0};
  mutable std::mutex mu_;
  std::vector<uint64_t> aborted_;
  std::vector<std::shared_ptr<Record>> records_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = test::shared_path("models/stories260K.gguf");
    if (!test::file_exists(model)) KVSERVE_MISSING_ASSET(model);
    EngineConfig cfg;
    cfg.model_path = model;
    cfg.num_kv_blocks = 256;
    cfg.n_threads = 1;
    auto engine = Engine::create(cfg);
    ASSERT_TRUE(engine) << engine.error().message;
    backend_ = std::make_unique<EngineBackend>(std::move(*engine));
    recorder_ = std::make_unique<RecordingBackend>(*backend_);
    ServerOptions opts;
    opts.port = 0;
    opts.model_names = {"stories"};
    opts.keepalive_ms = 100;
    server_ = std::make_unique<HttpServer>(*recorder_, opts);
    ASSERT_TRUE(server_->bind());
    thread_ = std::thread([this] { server_->run(); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(60);
  }
  void TearDown() override {
    if (server_) server_->shutdown();
    if (thread_.joinable()) thread_.join();
    backend_.reset();  // its last callbacks go through recorder_
  }

  // Sum of the samples of one metric family whose labels contain `label`.
  double metric(const std::string& name, const std::string& label = "") {
    auto res = client_->Get("/metrics");
    double total = 0;
    size_t pos = 0;
    const std::string& body = res->body;
    while ((pos = body.find(name + "{", pos)) != std::string::npos) {
      size_t eol = body.find('\n', pos);
      std::string line = body.substr(pos, eol - pos);
      if (label.empty() || line.find(label) != std::string::npos)
        total += std::stod(line.substr(line.rfind(' ') + 1));
      pos = eol;
    }
    return total;
  }

  std::unique_ptr<EngineBackend> backend_;
  std::unique_ptr<RecordingBackend> recorder_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, HealthModelsAndGreedyCompletion) {
  auto h = client_->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = client_->Get("/v1/models");
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "stories");
  auto r = client_->Post("/v1/completions",
                         R"({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0})",
                         "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>().rfind(", there was a little girl named Lily", 0), 0u)
      << j.dump();
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  // /metrics names the KV cache's dtype and capacity (the default f16, 256 blocks of 16).
  EXPECT_EQ(metric("kvserve:cache_config_info", "cache_dtype=\"f16\",block_size=\"16\",num_blocks=\"256\""),
            1);
  EXPECT_EQ(metric("kvserve:kv_cache_capacity_tokens"), 256 * 16);
}

TEST_F(HttpServerTest, StreamDeliversEventsThenDone) {
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0, "stream": true})";
  req.set_header("Content-Type", "application/json");
  std::string received;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    received.append(data, len);
    return true;
  };
  httplib::Response res;
  httplib::Error err;
  ASSERT_TRUE(client_->send(req, res, err));
  EXPECT_EQ(res.status, 200);
  std::string text;
  size_t events = 0, pos = 0;
  while ((pos = received.find("data: ", pos)) != std::string::npos) {
    size_t end = received.find("\n\n", pos);
    std::string payload = received.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") break;
    text += json::parse(payload)["choices"][0]["text"].get<std::string>();
    ++events;
  }
  EXPECT_EQ(received.substr(received.size() - 14), "data: [DONE]\n\n");
  EXPECT_GE(events, 5u);
  EXPECT_EQ(text.rfind(", there was a little girl", 0), 0u) << text;
}

TEST_F(HttpServerTest, BadRequestIs400) {
  auto r = client_->Post("/v1/completions", R"({"prompt": "x", "temperature": -3})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "temperature");
}

TEST_F(HttpServerTest, ClientDisconnectAbortsAndFreesBlocks) {
  // 480 tokens at 25 ms or more each: finishing by itself takes 12 s or more. A request
  // whose blocks are free within 2 s of the disconnect was aborted in the engine.
  constexpr int kMaxTokens = 480;
  recorder_->set_delta_delay(25ms);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": true, "stream": true})";
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  httplib::Client c("127.0.0.1", server_->port());
  httplib::Response res;
  httplib::Error err;
  c.send(req, res, err);  // returns once the receiver says stop; the connection closes
  c.stop();
  const auto disconnected = std::chrono::steady_clock::now();
  const auto deadline = disconnected + 2s;
  auto engine_done = [&] {
    auto recs = recorder_->records();
    return recs.size() == 1 && !recs[0].finish_reason.empty();
  };
  while (!engine_done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  while ((metric("kvserve:num_requests_running") > 0 || metric("kvserve:kv_cache_usage_perc") > 0) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  const double freed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - disconnected).count();

  // The server asked the engine to abort this very request...
  auto recs = recorder_->records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recorder_->aborted(), std::vector<uint64_t>{recs[0].id});
  // ...and the engine ended it as aborted, long before its natural end, and freed it.
  EXPECT_EQ(recs[0].finish_reason, "abort") << "after " << recs[0].tokens << " tokens";
  EXPECT_LT(recs[0].tokens, size_t(kMaxTokens / 4));
  EXPECT_EQ(metric("kvserve:num_requests_running"), 0);
  EXPECT_EQ(metric("kvserve:kv_cache_usage_perc"), 0);
  EXPECT_LT(freed_s, 2.0);
  EXPECT_EQ(metric("kvserve:request_success_total", "abort"), 1);
}

}  // namespace
}  // namespace kvserve::server
