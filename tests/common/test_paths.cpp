#include "common/test_paths.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "core/paths.h"

namespace kvserve::test {

std::string shared_path(const std::string& relative) {
  return shared_dir() + "/" + relative;
}
std::string smollm2_path() {
  return default_model_path();
}
std::string gemma3_path() {
  return gemma3_model_path();
}
bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}
bool assets_required() {
  const char* v = std::getenv("KVSERVE_NO_SKIP");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace kvserve::test
