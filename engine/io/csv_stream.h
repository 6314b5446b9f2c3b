// Streaming reader of multichannel CSV: a header row of channel names, one row per sample, and
// optionally a time column (seconds) from which the sample rate is inferred.
//
//   t,EMG1,EMG2          <- header (delimiter: ',' or ';' or tab, taken from the header)
//   0.0000,0.12,-0.40
//   0.0005,0.10,-0.38
//
// Bad rows (ragged, non-numeric cell, empty cell, NaN/Inf) reject the block they fall in with a
// message naming file:line and column; the reader then goes on with the next block.
#pragma once

#include <cstdint>
#include <deque>
#include <fstream>
#include <string>
#include <vector>

namespace rtnmf::io {

struct CsvStreamOptions {
  std::string time_column;          // empty: a column named t, time or time_s, if any
  std::vector<std::string> select;  // channel names to keep, in this order (empty: all)
  double sample_rate_hz = 0;        // overrides the rate inferred from the time column
};

class CsvStreamReader {
 public:
  // Opens the file, parses the header and infers the rate from up to the first 1000 rows.
  // Allocates. Throws std::runtime_error naming the file (and line) when it cannot be opened, has
  // no header, a selected column is missing, or no rate is known. Source thread.
  void open(const std::string& path, const CsvStreamOptions& options);

  // Reads up to `max_samples` rows into `out` (channels() × max_samples, column-major).
  // Returns the number read (0 at the end), or -1 when a row of this block was bad: the block's
  // rows are consumed and error() names file:line, column and reason. May allocate (line
  // buffer growth). Throws std::runtime_error on I/O failure. Source thread.
  std::int64_t read(float* out, std::int64_t max_samples);

  int channels() const { return static_cast<int>(columns_.size()); }
  double sample_rate_hz() const { return sample_rate_hz_; }
  const std::vector<std::string>& channel_names() const { return names_; }
  const std::string& error() const { return error_; }
  // 1-based line number of the last line read.
  std::int64_t line() const { return line_; }

 private:
  bool next_line(std::string& line);
  // Parses one data row into out[0..channels); false with error_ set on a bad row.
  bool parse_row(const std::string& row, std::int64_t line_no, float* out, double* time);

  std::string path_;
  std::ifstream in_;
  char delim_ = ',';
  std::vector<std::string> header_;
  std::vector<int> columns_;  // file column of each output channel
  std::vector<std::string> names_;
  int time_index_ = -1;
  double sample_rate_hz_ = 0;
  std::int64_t line_ = 0;
  std::deque<std::pair<std::int64_t, std::string>> pending_;  // rows read ahead at open()
  std::string row_;
  std::vector<std::string_view> cells_;
  std::string error_;
};

}  // namespace rtnmf::io
