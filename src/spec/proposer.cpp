#include "spec/proposer.h"

#include "spec/ngram_proposer.h"

namespace kvserve {

std::unique_ptr<Proposer> make_proposer(const SpeculativeConfig& config) {
  switch (config.method) {
    case SpecMethod::Ngram: return std::make_unique<NgramProposer>(config);
    case SpecMethod::None:
    case SpecMethod::Draft:
    case SpecMethod::LayerSkip: break;
  }
  return nullptr;
}

}  // namespace kvserve
