#include <string>

#include "model/arch/arch.h"

namespace kvserve {

extern const ArchDef kArchLlama, kArchQwen2, kArchQwen3, kArchGemma3, kArchPhi3, kArchQwen3Moe;

namespace {
const ArchDef* const kArchs[] = {&kArchLlama,  &kArchQwen2, &kArchQwen3,
                                 &kArchGemma3, &kArchPhi3,  &kArchQwen3Moe};
}  // namespace

const ArchDef* find_arch(std::string_view name) {
  for (const ArchDef* a : kArchs)
    if (a->name == name) return a;
  return nullptr;
}

std::string supported_arch_names() {
  std::string s;
  for (const ArchDef* a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a->name);
  return s;
}

}  // namespace kvserve
