// `rtnmf simulate emg ...`: called by the `simulate` command (cmd_simulate_calcium.cc) when its
// first argument is "emg"; `args` excludes "simulate" and "emg".
#pragma once

#include <string>
#include <vector>

namespace rtnmf::cli {

// Writes simulated surface EMG (CSV) or planted-assembly spike counts (CSV) and the truth
// (HDF5). Returns the exit code; throws UsageError for bad options, std::runtime_error for I/O.
int run_simulate_emg(const std::vector<std::string>& args);

// Help text for `rtnmf simulate emg`.
extern const char* const kSimulateEmgUsage;

}  // namespace rtnmf::cli
