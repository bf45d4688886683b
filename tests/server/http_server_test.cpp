// The HTTP server end to end in-process: the real engine on stories260K behind
// EngineBackend, HttpServer on a free loopback port, and httplib's client.
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/test_paths.h"
#include "kvserve/engine.h"
#include "server/engine_backend.h"

namespace kvserve::server {
namespace {

using json = nlohmann::json;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = test::shared_path("models/stories260K.gguf");
    if (!test::file_exists(model)) GTEST_SKIP() << model << " missing";
    EngineConfig cfg;
    cfg.model_path = model;
    cfg.num_kv_blocks = 256;
    cfg.n_threads = 1;
    auto engine = Engine::create(cfg);
    ASSERT_TRUE(engine) << engine.error().message;
    backend_ = std::make_unique<EngineBackend>(std::move(*engine));
    ServerOptions opts;
    opts.port = 0;
    opts.model_names = {"stories"};
    opts.keepalive_ms = 100;
    server_ = std::make_unique<HttpServer>(*backend_, opts);
    ASSERT_TRUE(server_->bind());
    thread_ = std::thread([this] { server_->run(); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(60);
  }
  void TearDown() override {
    if (server_) server_->shutdown();
    if (thread_.joinable()) thread_.join();
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
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (metric("kvserve:request_success_total", "abort") < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(metric("kvserve:request_success_total", "abort"), 1);
  while ((metric("kvserve:num_requests_running") > 0 || metric("kvserve:kv_cache_usage_perc") > 0) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(metric("kvserve:num_requests_running"), 0);
  EXPECT_EQ(metric("kvserve:kv_cache_usage_perc"), 0);
}

}  // namespace
}  // namespace kvserve::server
