#include "core/paths.h"

#include <cstdlib>

namespace kvserve {

std::string shared_dir() {
  if (const char* e = std::getenv("KVSERVE_SHARED_DIR"); e != nullptr && *e != 0) return e;
  return KVSERVE_SHARED_DIR_DEFAULT;
}

std::string model_dir() {
  if (const char* e = std::getenv("KVSERVE_MODEL_DIR"); e != nullptr && *e != 0) return e;
  return KVSERVE_MODEL_DIR_DEFAULT;
}

std::string default_model_path() {
  return model_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string gemma3_model_path() {
  return model_dir() + "/gemma-3-270m-q4_k_m.gguf";
}

}  // namespace kvserve
