// Reading a data matrix for the offline tools (rtnmf fit / rank, scoring): CSV, NumPy .npy, or an
// HDF5 dataset. The matrix is returned exactly as stored (rows × columns of the file); the
// caller decides the orientation (`--transpose`).
//
//   INPUT              format
//   data.csv / .tsv    text, comma / tab / semicolon separated (detected from the first line);
//                      an optional first row of column names (recognised when none of its fields
//                      is a number); blank lines are skipped
//   data.npy           NumPy format v1/v2/v3, little-endian float32/float64/int8..64/uint8..64/
//                      bool, C or Fortran order, 1-d (read as one column) or 2-d
//   file.h5:/path      an HDF5 dataset, 1-d (one column) or 2-d, any numeric type
//
// Errors throw std::runtime_error whose message starts with the input's name and says where:
//   "x.csv: line 4, column 2: 'abc' is not a number"
//   "x.csv: line 4 has 3 fields, expected 4 (ragged row)"
//   "x.csv: no data (empty matrix)"
// and, from validate_nonnegative_matrix (called by read_matrix unless disabled):
//   "x.csv: negative value -1.5 at row 3, column 2 (1-based)"
//   "x.csv: NaN at row 3, column 2 (1-based)"
//   "x.csv: infinite value at row 3, column 2 (1-based)"
// Rows and columns are those of the matrix (data rows, header excluded), counted from 1.
//
// All functions allocate; any thread (HDF5 reads follow h5.h's single-thread rule).
#pragma once

#include <Eigen/Core>
#include <string>
#include <vector>

namespace rtnmf::io {

struct LoadedMatrix {
  Eigen::MatrixXf values;                 // rows × columns as stored in the file
  std::vector<std::string> column_names;  // CSV header if present, else empty
  std::string source;                     // the input spec, for messages
  std::string dtype;                      // .npy: the stored dtype ('descr', e.g. "<i8", "|b1")
};

// Reads INPUT as described above; with `validate`, also rejects negative, NaN, Inf and empty.
LoadedMatrix read_matrix(const std::string& spec, bool validate = true);

LoadedMatrix read_csv(const std::string& path);
LoadedMatrix read_npy(const std::string& path);
LoadedMatrix read_h5_matrix(const std::string& file, const std::string& dataset);

// Throws std::runtime_error naming `source`, the value and its 1-based row and column.
void validate_nonnegative_matrix(const Eigen::Ref<const Eigen::MatrixXf>& m,
                                 const std::string& source);

// Writes m as a float32 C-order (row-major) .npy file (v1 header). Throws naming the file.
void write_npy(const std::string& path, const Eigen::Ref<const Eigen::MatrixXf>& m);

}  // namespace rtnmf::io
