#include "core/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace kvserve {

LogLevel log_level() {
  static const LogLevel level = [] {
    const char* e = std::getenv("KVSERVE_LOG");
    if (e == nullptr) return LogLevel::Info;
    if (std::strcmp(e, "debug") == 0) return LogLevel::Debug;
    if (std::strcmp(e, "warn") == 0) return LogLevel::Warn;
    if (std::strcmp(e, "error") == 0) return LogLevel::Error;
    return LogLevel::Info;
  }();
  return level;
}

void log_write(LogLevel level, std::string_view message) {
  static std::mutex mu;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[kvserve %s] %.*s\n", names[int(level)], int(message.size()), message.data());
}

}  // namespace kvserve
