#include "engine/io/frame_list.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include "engine/io/matrix_io.h"

namespace rtnmf::io {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A whole decimal number >= 0 (digits only), else false.
bool parse_index(const std::string& s, std::uint64_t& v) {
  if (s.empty() || s.size() > 18) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return true;
}

void read_text(const std::string& path, std::vector<std::uint64_t>& out) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open for reading");
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const std::size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    for (char& c : line)
      if (c == ',' || c == '\t' || c == '\r') c = ' ';
    std::size_t pos = 0;
    while (pos < line.size()) {
      const std::size_t start = line.find_first_not_of(' ', pos);
      if (start == std::string::npos) break;
      const std::size_t end = std::min(line.find(' ', start), line.size());
      const std::string token = line.substr(start, end - start);
      pos = end;
      const std::string where = "line " + std::to_string(number) + ": ";
      std::uint64_t a = 0, b = 0;
      const std::size_t dash = token.find('-', 1);
      const bool range = dash != std::string::npos;
      if (!(range ? parse_index(token.substr(0, dash), a) && parse_index(token.substr(dash + 1), b)
                  : parse_index(token, a)))
        fail(path, where + "'" + token + "' is not a frame index or range (N or A-B)");
      if (!range) b = a;
      if (b < a) fail(path, where + "range " + token + " ends before it starts");
      if (b - a > 100'000'000) fail(path, where + "range " + token + " lists more than 10^8 frames");
      for (std::uint64_t t = a; t <= b; ++t) out.push_back(t);
    }
  }
  if (in.bad()) fail(path, "read error");
}

void read_array(const std::string& path, std::vector<std::uint64_t>& out) {
  const LoadedMatrix m = read_npy(path);
  if (m.dtype.size() > 1 && m.dtype[1] == 'b') {  // bool: a mask, True at the frames meant
    for (Eigen::Index i = 0; i < m.values.size(); ++i)
      if (m.values.data()[i] != 0) out.push_back(static_cast<std::uint64_t>(i));
    return;
  }
  if (m.values.rows() != 1 && m.values.cols() != 1 && m.values.size() != 0)
    fail(path, "expected a 1-d array of frame indices, got " + std::to_string(m.values.rows()) + " x " +
                   std::to_string(m.values.cols()));
  const Eigen::Index n = m.values.size();
  for (Eigen::Index i = 0; i < n; ++i) {
    const float v = m.values.data()[i];
    // float32 holds every whole number up to 2^24 (155 hours at 30 Hz) exactly.
    if (!(v >= 0) || v != std::floor(v) || v > 16777216.0f) {
      char text[32];
      std::snprintf(text, sizeof text, "%g", static_cast<double>(v));
      fail(path, "element " + std::to_string(i) + ": " + text + " is not a frame index (a whole number >= 0)");
    }
    out.push_back(static_cast<std::uint64_t>(v));
  }
}

}  // namespace

std::vector<std::uint64_t> read_frame_list(const std::string& path) {
  std::vector<std::uint64_t> out;
  if (ends_with(path, ".npy"))
    read_array(path, out);
  else
    read_text(path, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace rtnmf::io
