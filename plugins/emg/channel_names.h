// Channel names of a stream, handed from the EMG file source (open) to the stages (start),
// since StreamSpec carries no names. Internal to the EMG plugin family.
#pragma once

#include <string>
#include <vector>

namespace rtnmf::emg::detail {

// Records the names for stream_id (replacing earlier ones). Allocates; locks. Source open().
void set_channel_names(const std::string& stream_id, std::vector<std::string> names);
// The recorded names, or "ch1", "ch2", ... when none were recorded or the count differs.
// Allocates; locks. Stage start() / write_results only.
std::vector<std::string> channel_names(const std::string& stream_id, int channels);

}  // namespace rtnmf::emg::detail
