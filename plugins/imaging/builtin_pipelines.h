// Built-in pipelines of the imaging family ("calcium-2p", "calcium-1p"), registered with the
// runtime's BuiltinPipelineRegistration (so `rtnmf replay MOVIE --pipeline calcium-2p` finds
// them) and also reachable here by name.
#pragma once

#include <string_view>

namespace rtnmf::imaging {

// The pbtxt text of "calcium-2p" or "calcium-1p", or nullptr for another name. Static storage;
// any thread.
const char* imaging_builtin_pipeline(std::string_view name);

}  // namespace rtnmf::imaging
