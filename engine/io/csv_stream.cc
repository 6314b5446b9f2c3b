#include "engine/io/csv_stream.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string_view>

namespace rtnmf::io {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"')) {
    s.remove_suffix(1);
  }
  return s;
}

void split(std::string_view row, char delim, std::vector<std::string_view>& cells) {
  cells.clear();
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = row.find(delim, start);
    if (pos == std::string_view::npos) {
      cells.push_back(trim(row.substr(start)));
      return;
    }
    cells.push_back(trim(row.substr(start, pos - start)));
    start = pos + 1;
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

bool CsvStreamReader::next_line(std::string& line) {
  while (std::getline(in_, line)) {
    ++line_;
    if (!blank(line)) return true;
  }
  if (in_.bad()) throw std::runtime_error(path_ + ":" + std::to_string(line_) + ": read error");
  return false;
}

void CsvStreamReader::open(const std::string& path, const CsvStreamOptions& options) {
  path_ = path;
  in_ = std::ifstream(path);
  if (!in_) throw std::runtime_error(path + ": cannot open");
  line_ = 0;
  pending_.clear();
  std::string header;
  if (!next_line(header)) throw std::runtime_error(path + ": empty file (no header row)");
  if (header.size() >= 3 && header.compare(0, 3, "\xEF\xBB\xBF") == 0) header.erase(0, 3);
  delim_ = header.find(',') != std::string::npos    ? ','
           : header.find(';') != std::string::npos  ? ';'
           : header.find('\t') != std::string::npos ? '\t'
                                                    : ',';
  split(header, delim_, cells_);
  header_.assign(cells_.begin(), cells_.end());
  for (std::size_t i = 0; i < header_.size(); ++i) {
    if (header_[i].empty()) {
      throw std::runtime_error(path + ":1: column " + std::to_string(i + 1) + " has no name");
    }
    double dummy;
    const char* b = header_[i].data();
    auto [p, ec] = std::from_chars(b, b + header_[i].size(), dummy);
    if (ec == std::errc() && p == b + header_[i].size()) {
      throw std::runtime_error(
          path + ":1: the first row must name the channels, found the number " + header_[i]);
    }
  }
  time_index_ = -1;
  for (std::size_t i = 0; i < header_.size(); ++i) {
    const std::string l = lower(header_[i]);
    if (options.time_column.empty() ? (l == "t" || l == "time" || l == "time_s")
                                    : header_[i] == options.time_column) {
      time_index_ = static_cast<int>(i);
      break;
    }
  }
  if (!options.time_column.empty() && time_index_ < 0) {
    throw std::runtime_error(path + ":1: no time column '" + options.time_column + "'");
  }
  columns_.clear();
  names_.clear();
  if (options.select.empty()) {
    for (std::size_t i = 0; i < header_.size(); ++i) {
      if (static_cast<int>(i) == time_index_) continue;
      columns_.push_back(static_cast<int>(i));
      names_.push_back(header_[i]);
    }
  } else {
    for (const std::string& name : options.select) {
      auto it = std::find(header_.begin(), header_.end(), name);
      if (it == header_.end()) {
        std::string known;
        for (const auto& h : header_) known += (known.empty() ? "" : ", ") + h;
        throw std::runtime_error(path + ":1: no column '" + name + "' (columns: " + known + ")");
      }
      columns_.push_back(static_cast<int>(it - header_.begin()));
      names_.push_back(name);
    }
  }
  if (columns_.empty()) throw std::runtime_error(path + ":1: no data columns");

  // Read ahead to infer the rate from the time column.
  sample_rate_hz_ = options.sample_rate_hz;
  if (time_index_ >= 0) {
    std::vector<float> scratch(header_.size());
    double t_first = 0, t_last = 0;
    std::int64_t n = 0;
    std::string row;
    bool bad = false;
    while (pending_.size() < 1000 && next_line(row)) {
      pending_.emplace_back(line_, row);
      double t = 0;
      if (!parse_row(row, line_, scratch.data(), &t)) {  // reported again by read()
        bad = true;
        break;
      }
      if (n == 0) t_first = t;
      t_last = t;
      ++n;
    }
    if (sample_rate_hz_ <= 0) {
      // A bad row before two good ones leaves nothing to infer from: report that row.
      if (n < 2 && bad) throw std::runtime_error(error_);
      if (n < 2 || !(t_last > t_first)) {
        throw std::runtime_error(path + ": cannot infer the sample rate from time column '" +
                                 header_[time_index_] +
                                 "' (needs two increasing times in the first rows); "
                                 "set source.sample_rate");
      }
      sample_rate_hz_ = static_cast<double>(n - 1) / (t_last - t_first);
    }
  }
  if (!(sample_rate_hz_ > 0)) {
    throw std::runtime_error(path +
                             ": no time column (t, time, time_s) and no sample rate; set "
                             "source.sample_rate");
  }
  error_.clear();
}

bool CsvStreamReader::parse_row(const std::string& row, std::int64_t line_no, float* out,
                                double* time) {
  split(row, delim_, cells_);
  const std::string where = path_ + ":" + std::to_string(line_no) + ": ";
  if (cells_.size() != header_.size()) {
    error_ = where + "expected " + std::to_string(header_.size()) +
             " cells (as in the header), found " + std::to_string(cells_.size());
    return false;
  }
  auto parse = [&](int col, double* v) {
    std::string_view cell = cells_[col];
    if (cell.empty()) {
      error_ = where + "column '" + header_[col] + "': empty cell";
      return false;
    }
    const char* b = cell.data();
    const char* e = b + cell.size();
    if (*b == '+') ++b;
    auto [p, ec] = std::from_chars(b, e, *v);
    if (ec != std::errc() || p != e) {
      error_ = where + "column '" + header_[col] + "': '" + std::string(cell) + "' is not a number";
      return false;
    }
    if (!std::isfinite(*v)) {
      error_ = where + "column '" + header_[col] + "': not a finite number ('" + std::string(cell) +
               "')";
      return false;
    }
    return true;
  };
  if (time_index_ >= 0 && time && !parse(time_index_, time)) return false;
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    double v;
    if (!parse(columns_[c], &v)) return false;
    out[c] = static_cast<float>(v);
  }
  return true;
}

std::int64_t CsvStreamReader::read(float* out, std::int64_t max_samples) {
  const int nc = channels();
  std::int64_t n = 0;
  bool bad = false;
  std::string first_error;
  while (n < max_samples) {
    std::int64_t line_no;
    if (!pending_.empty()) {
      line_no = pending_.front().first;
      row_.swap(pending_.front().second);
      pending_.pop_front();
    } else if (next_line(row_)) {
      line_no = line_;
    } else {
      break;
    }
    double t;
    if (!parse_row(row_, line_no, out + n * nc, &t)) {
      if (!bad) first_error = error_;
      bad = true;
    }
    ++n;
  }
  if (bad) {
    error_ = first_error;
    return -1;
  }
  return n;
}

}  // namespace rtnmf::io
