// Subcommand table of the `rtnmf` CLI. Every tools/rtnmf/cmd_*.cc registers one subcommand with
// a static `CommandRegistration`; main() dispatches on argv[1].
#pragma once

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rtnmf::cli {

// args excludes the program and the subcommand name. Returns the process exit code.
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string name;
  std::string summary;  // one line, shown by `rtnmf --help`
  std::string usage;    // full help, shown by `rtnmf NAME --help`
  CommandFn run;
};

// The table of all registered commands, sorted by name. Not thread-safe; used at startup only.
std::map<std::string, Command>& commands();

struct CommandRegistration {
  explicit CommandRegistration(Command c);
};

// Small helpers shared by the subcommands. Parse errors throw UsageError with a message that
// names the option.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Simple option scanner: `--name value`, `--name=value`, `--flag`, and positionals.
class ArgParser {
 public:
  ArgParser(const std::vector<std::string>& args, std::vector<std::string> flags_without_value);
  bool has(std::string_view name) const;
  // The value of --name, or def when absent. Repeated options: the last one wins.
  std::string get(std::string_view name, std::string def = "") const;
  // Every value of a repeatable option (e.g. --set), in order.
  std::vector<std::string> get_all(std::string_view name) const;
  double get_double(std::string_view name, double def) const;
  long long get_int(std::string_view name, long long def) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  // Throws UsageError naming the first option not in `known`.
  void check_known(const std::vector<std::string>& known) const;

 private:
  std::vector<std::pair<std::string, std::string>> options_;
  std::vector<std::string> positionals_;
};

}  // namespace rtnmf::cli
