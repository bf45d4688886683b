// Where shared test assets and downloaded models live (overridable by environment).
#pragma once

#include <string>

namespace kvserve {

// $KVSERVE_SHARED_DIR, else the build-time default (../shared beside the repo).
std::string shared_dir();
// $KVSERVE_MODEL_DIR, else the build-time default (models/ in the repo).
std::string model_dir();
// The default model: model_dir()/SmolLM2-135M-Instruct.Q4_1.gguf.
std::string default_model_path();
// Gemma-3-270M (Q4_K_M): model_dir()/gemma-3-270m-q4_k_m.gguf (scripts/fetch_model.sh gemma3).
std::string gemma3_model_path();

}  // namespace kvserve
