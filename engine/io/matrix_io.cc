// CSV / NPY / HDF5 matrix readers. See matrix_io.h.
#include "engine/io/matrix_io.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "engine/io/h5.h"

namespace rtnmf::io {

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error(source + ": " + what);
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r' || s[b] == '"')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '"'))
    --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == sep) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(trim(cur));
  return out;
}

bool parse_float(const std::string& s, float& out) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;
  auto [ptr, ec] = std::from_chars(b, e, out);
  if (ec == std::errc::result_out_of_range) {
    // Overflow reads as infinity, which validation then reports with its position.
    double d = std::strtod(s.c_str(), nullptr);
    out = static_cast<float>(d);
    return true;
  }
  return ec == std::errc() && ptr == e;
}

bool blank(const std::string& line) {
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

}  // namespace

void validate_nonnegative_matrix(const Eigen::Ref<const Eigen::MatrixXf>& m,
                                 const std::string& source) {
  if (m.rows() == 0 || m.cols() == 0) fail(source, "no data (empty matrix)");
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      const float v = m(i, j);
      if (v >= 0.f && std::isfinite(v)) continue;
      const std::string at = " at row " + std::to_string(i + 1) + ", column " +
                             std::to_string(j + 1) + " (1-based)";
      if (std::isnan(v)) fail(source, "NaN" + at);
      if (std::isinf(v)) fail(source, "infinite value" + at);
      std::ostringstream os;
      os << v;
      fail(source, "negative value " + os.str() + at);
    }
  }
}

LoadedMatrix read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open for reading");
  LoadedMatrix out;
  out.source = path;
  std::string line;
  std::vector<float> values;
  size_t width = 0;
  Eigen::Index rows = 0;
  char sep = ',';
  bool first = true;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (blank(line)) continue;
    if (first) {
      if (line.find(',') != std::string::npos) {
        sep = ',';
      } else if (line.find('\t') != std::string::npos) {
        sep = '\t';
      } else if (line.find(';') != std::string::npos) {
        sep = ';';
      }
    }
    std::vector<std::string> fields = split(line, sep);
    if (first) {
      first = false;
      width = fields.size();
      bool any_number = false;
      float dummy;
      for (const auto& f : fields) any_number = any_number || parse_float(f, dummy);
      if (!any_number) {
        out.column_names = fields;
        continue;
      }
    }
    if (fields.size() != width)
      fail(path, "line " + std::to_string(line_no) + " has " + std::to_string(fields.size()) +
                     " fields, expected " + std::to_string(width) + " (ragged row)");
    for (size_t c = 0; c < fields.size(); ++c) {
      float v;
      if (!parse_float(fields[c], v))
        fail(path, "line " + std::to_string(line_no) + ", column " + std::to_string(c + 1) +
                       ": '" + fields[c] + "' is not a number");
      values.push_back(v);
    }
    ++rows;
  }
  if (rows == 0) fail(path, "no data (empty matrix)");
  out.values = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic,
                                              Eigen::RowMajor>>(values.data(), rows,
                                                                static_cast<Eigen::Index>(width));
  return out;
}

namespace {

// Finds `'key': value` in a NumPy header dict and returns the raw value text.
std::string header_value(const std::string& header, const std::string& key,
                         const std::string& path) {
  const std::string k1 = "'" + key + "'";
  size_t p = header.find(k1);
  if (p == std::string::npos) fail(path, "npy header has no '" + key + "'");
  p = header.find(':', p + k1.size());
  if (p == std::string::npos) fail(path, "malformed npy header");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (header[p] == '(') {
    size_t e = header.find(')', p);
    return header.substr(p, e - p + 1);
  }
  if (header[p] == '\'') {
    size_t e = header.find('\'', p + 1);
    return header.substr(p + 1, e - p - 1);
  }
  size_t e = header.find_first_of(",}", p);
  return trim(header.substr(p, e - p));
}

template <typename T>
void convert(const std::vector<char>& raw, std::vector<float>& out) {
  const size_t n = raw.size() / sizeof(T);
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<float>(v);
  }
}

}  // namespace

LoadedMatrix read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, "not a NumPy .npy file");
  const int major = static_cast<unsigned char>(magic[6]);
  std::uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  } else {
    fail(path, "unsupported .npy version " + std::to_string(major));
  }
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  if (!in) fail(path, "truncated .npy header");
  const std::string descr = header_value(header, "descr", path);
  const bool fortran = header_value(header, "fortran_order", path) == "True";
  const std::string shape_text = header_value(header, "shape", path);
  std::vector<long long> shape;
  {
    std::string num;
    for (char c : shape_text) {
      if (c >= '0' && c <= '9') {
        num += c;
      } else if (!num.empty()) {
        shape.push_back(std::stoll(num));
        num.clear();
      }
    }
  }
  if (shape.size() > 2)
    fail(path, "expected a 1-d or 2-d array, found " + std::to_string(shape.size()) +
                   " dimensions");
  const long long rows = shape.empty() ? 1 : shape[0];
  const long long cols = shape.size() == 2 ? shape[1] : 1;
  if (descr.size() < 3) fail(path, "unsupported dtype '" + descr + "'");
  if (descr[0] == '>') fail(path, "big-endian dtype '" + descr + "' is not supported");
  const char kind = descr[1];
  const int size = std::atoi(descr.c_str() + 2);
  std::vector<char> raw(static_cast<size_t>(rows * cols) * static_cast<size_t>(size));
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  if (!in) fail(path, "file shorter than its header says (" + std::to_string(rows) + "x" +
                          std::to_string(cols) + " of " + descr + ")");
  std::vector<float> flat;
  if (kind == 'f' && size == 4) convert<float>(raw, flat);
  else if (kind == 'f' && size == 8) convert<double>(raw, flat);
  else if (kind == 'i' && size == 1) convert<std::int8_t>(raw, flat);
  else if (kind == 'i' && size == 2) convert<std::int16_t>(raw, flat);
  else if (kind == 'i' && size == 4) convert<std::int32_t>(raw, flat);
  else if (kind == 'i' && size == 8) convert<std::int64_t>(raw, flat);
  else if ((kind == 'u' || kind == 'b') && size == 1) convert<std::uint8_t>(raw, flat);
  else if (kind == 'u' && size == 2) convert<std::uint16_t>(raw, flat);
  else if (kind == 'u' && size == 4) convert<std::uint32_t>(raw, flat);
  else if (kind == 'u' && size == 8) convert<std::uint64_t>(raw, flat);
  else fail(path, "unsupported dtype '" + descr + "'");
  LoadedMatrix out;
  out.source = path;
  out.dtype = descr;
  if (fortran) {
    out.values = Eigen::Map<const Eigen::MatrixXf>(flat.data(), rows, cols);
  } else {
    out.values = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic,
                                                Eigen::RowMajor>>(flat.data(), rows, cols);
  }
  return out;
}

LoadedMatrix read_h5_matrix(const std::string& file, const std::string& dataset) {
  h5::File f = h5::File::open(file);
  LoadedMatrix out;
  out.source = file + ":" + dataset;
  out.values = f.read_matrix<float>(dataset);
  return out;
}

LoadedMatrix read_matrix(const std::string& spec, bool validate) {
  LoadedMatrix m;
  const size_t colon = spec.rfind(":/");
  auto ends_with = [&](const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
  };
  if (colon != std::string::npos && colon > 0) {
    m = read_h5_matrix(spec.substr(0, colon), spec.substr(colon + 1));
  } else if (ends_with(spec, ".npy")) {
    m = read_npy(spec);
  } else if (ends_with(spec, ".csv") || ends_with(spec, ".tsv") || ends_with(spec, ".txt")) {
    m = read_csv(spec);
  } else if (ends_with(spec, ".h5") || ends_with(spec, ".hdf5")) {
    fail(spec, "name the dataset too, as FILE.h5:/path/to/dataset");
  } else {
    fail(spec, "unknown input format (expected .csv, .tsv, .npy or FILE.h5:/dataset)");
  }
  m.source = spec;
  if (validate) validate_nonnegative_matrix(m.values, spec);
  return m;
}

void write_npy(const std::string& path, const Eigen::Ref<const Eigen::MatrixXf>& m) {
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(path, "cannot open for writing");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "), }";
  // Pad so that magic + length + header is a multiple of 64, ending in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  out.write("\x93NUMPY\x01\x00", 8);
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  const unsigned char lb[2] = {static_cast<unsigned char>(len & 0xff),
                               static_cast<unsigned char>(len >> 8)};
  out.write(reinterpret_cast<const char*>(lb), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = m;
  out.write(reinterpret_cast<const char*>(rm.data()),
            static_cast<std::streamsize>(rm.size() * sizeof(float)));
  if (!out) fail(path, "write failed");
}

}  // namespace rtnmf::io
