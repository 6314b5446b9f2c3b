// Built-in pipelines of the EMG / assembly family, registered with the runtime's
// BuiltinPipelineRegistration (so `rtnmf replay --pipeline emg-synergies` finds them) and also
// reachable here by name.
#pragma once

#include <string_view>

namespace rtnmf::emg {

// The pbtxt text of "emg-synergies" or "assemblies", or nullptr for another name. Static
// storage; any thread.
const char* emg_builtin_pipeline(std::string_view name);

}  // namespace rtnmf::emg
