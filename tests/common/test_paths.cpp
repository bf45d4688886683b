#include "common/test_paths.h"

#include <sys/stat.h>

#include "core/paths.h"

namespace kvserve::test {

std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }
std::string smollm2_path() { return default_model_path(); }
bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace kvserve::test
