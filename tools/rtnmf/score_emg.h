// `rtnmf score ...` for synergies and assemblies: called by the `score` command when the truth
// file holds /truth/synergies (or when its first argument is "emg"); `args` excludes "score" and
// "emg".
#pragma once

#include <string>
#include <vector>

namespace rtnmf::cli {

// Prints one JSON object: matched cosine per component and mean/min, and activation
// correlations. Returns 0, or 3 when --min-cosine is given and not reached. Throws UsageError /
// std::runtime_error.
int run_score_emg(const std::vector<std::string>& args);

// Help text for `rtnmf score emg`.
extern const char* const kScoreEmgUsage;

}  // namespace rtnmf::cli
