// Paths of shared test assets for tests.
#pragma once

#include <string>

namespace kvserve::test {

std::string shared_path(const std::string& relative);  // ../shared/<relative>
std::string smollm2_path();                            // the downloaded default model
bool file_exists(const std::string& path);

}  // namespace kvserve::test
