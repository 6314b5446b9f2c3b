// `rtnmf`: one binary, many subcommands (see command.h).
#include <cstdio>
#include <exception>
#include <stdexcept>

#include "tools/rtnmf/command.h"

namespace rtnmf::cli {

std::map<std::string, Command>& commands() {
  static std::map<std::string, Command> table;
  return table;
}

CommandRegistration::CommandRegistration(Command c) {
  std::string name = c.name;
  commands().emplace(std::move(name), std::move(c));
}

ArgParser::ArgParser(const std::vector<std::string>& args,
                     std::vector<std::string> flags_without_value) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      std::string value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (std::find(flags_without_value.begin(), flags_without_value.end(), name) !=
                 flags_without_value.end()) {
        value = "1";
      } else {
        if (i + 1 >= args.size()) throw UsageError("option --" + name + " needs a value");
        value = args[++i];
      }
      options_.emplace_back(std::move(name), std::move(value));
    } else {
      positionals_.push_back(a);
    }
  }
}

bool ArgParser::has(std::string_view name) const {
  for (const auto& [k, v] : options_)
    if (k == name) return true;
  return false;
}

std::string ArgParser::get(std::string_view name, std::string def) const {
  for (auto it = options_.rbegin(); it != options_.rend(); ++it)
    if (it->first == name) return it->second;
  return def;
}

std::vector<std::string> ArgParser::get_all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : options_)
    if (k == name) out.push_back(v);
  return out;
}

double ArgParser::get_double(std::string_view name, double def) const {
  if (!has(name)) return def;
  std::string v = get(name);
  try {
    size_t pos = 0;
    double d = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    throw UsageError("option --" + std::string(name) + ": '" + v + "' is not a number");
  }
}

long long ArgParser::get_int(std::string_view name, long long def) const {
  if (!has(name)) return def;
  std::string v = get(name);
  try {
    size_t pos = 0;
    long long d = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    throw UsageError("option --" + std::string(name) + ": '" + v + "' is not an integer");
  }
}

void ArgParser::check_known(const std::vector<std::string>& known) const {
  for (const auto& [k, v] : options_)
    if (std::find(known.begin(), known.end(), k) == known.end())
      throw UsageError("unknown option --" + k);
}

}  // namespace rtnmf::cli

namespace {

void print_overview() {
  std::printf("rtnmf " RTNMF_VERSION " - real-time non-negative matrix factorization\n\n");
  std::printf("usage: rtnmf COMMAND [options]   (rtnmf COMMAND --help for details)\n\ncommands:\n");
  for (const auto& [name, c] : rtnmf::cli::commands())
    std::printf("  %-10s %s\n", name.c_str(), c.summary.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    print_overview();
    return argc < 2 ? 2 : 0;
  }
  if (std::string_view(argv[1]) == "--version") {
    std::printf("rtnmf %s\n", RTNMF_VERSION);
    return 0;
  }
  auto& table = rtnmf::cli::commands();
  auto it = table.find(argv[1]);
  if (it == table.end()) {
    std::fprintf(stderr, "rtnmf: unknown command '%s'\n\n", argv[1]);
    print_overview();
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::printf("%s\n", it->second.usage.c_str());
      return 0;
    }
  }
  try {
    return it->second.run(args);
  } catch (const rtnmf::cli::UsageError& e) {
    std::fprintf(stderr, "rtnmf %s: %s\n(see rtnmf %s --help)\n", argv[1], e.what(), argv[1]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rtnmf %s: error: %s\n", argv[1], e.what());
    return 1;
  }
}
