// Paths of shared test assets for tests.
#pragma once

#include <string>

namespace kvserve::test {

std::string shared_path(const std::string& relative);  // ../shared/<relative>
std::string smollm2_path();                            // the downloaded default model
std::string gemma3_path();                             // the downloaded Gemma-3-270M model
bool file_exists(const std::string& path);
// True where every asset must be present (KVSERVE_NO_SKIP=1: scripts/test.sh, which
// fetches them all, and so CI): there a missing asset fails the test instead of skipping it.
bool assets_required();

}  // namespace kvserve::test

// Skips the test saying what is missing, or fails it where assets are required. Use in
// a test body or SetUp (it returns from the function).
#define KVSERVE_MISSING_ASSET(what)                                                                       \
  do {                                                                                                    \
    if (::kvserve::test::assets_required()) GTEST_FAIL() << "missing " << what << " (KVSERVE_NO_SKIP=1)"; \
    GTEST_SKIP() << "missing " << what;                                                                   \
  } while (0)
