// Sparse footprint matrices in HDF5, in scipy.sparse.csc_matrix layout: a group with datasets
// data (float32, nnz), indices (int32 row indices, nnz), indptr (int64, cols + 1) and shape
// (int64, [rows, cols]). Used by result files and simulator truth files.
#pragma once

#include <Eigen/SparseCore>
#include <string>

#include "engine/io/h5.h"

namespace rtnmf::io {

// Writes m (compressed or not) under `group` (replacing). Allocates; throws naming file and group.
void write_csc(h5::File& file, const std::string& group, const Eigen::SparseMatrix<float>& m);
// Reads a CSC group. Allocates; throws std::runtime_error naming file and group when a dataset is
// missing or the index arrays are inconsistent.
Eigen::SparseMatrix<float> read_csc(const h5::File& file, const std::string& group);

}  // namespace rtnmf::io
