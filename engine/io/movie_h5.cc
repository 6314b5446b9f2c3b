#include "engine/io/movie_h5.h"

#include <stdexcept>
#include <vector>

namespace rtnmf::io {

void write_csc(h5::File& file, const std::string& group, const Eigen::SparseMatrix<float>& m_in) {
  Eigen::SparseMatrix<float> m = m_in;
  m.makeCompressed();
  const std::uint64_t nnz = static_cast<std::uint64_t>(m.nonZeros());
  std::vector<float> data(m.valuePtr(), m.valuePtr() + nnz);
  std::vector<std::int32_t> indices(m.innerIndexPtr(), m.innerIndexPtr() + nnz);
  std::vector<std::int64_t> indptr(static_cast<std::size_t>(m.cols()) + 1);
  for (Eigen::Index j = 0; j <= m.cols(); ++j) indptr[static_cast<std::size_t>(j)] = m.outerIndexPtr()[j];
  std::vector<std::int64_t> shape = {m.rows(), m.cols()};
  file.create_group(group);
  file.write<float>(group + "/data", data, {nnz});
  file.write<std::int32_t>(group + "/indices", indices, {nnz});
  file.write<std::int64_t>(group + "/indptr", indptr, {indptr.size()});
  file.write<std::int64_t>(group + "/shape", shape, {2});
}

Eigen::SparseMatrix<float> read_csc(const h5::File& file, const std::string& group) {
  std::vector<float> data = file.read<float>(group + "/data");
  std::vector<std::int64_t> indices = file.read<std::int64_t>(group + "/indices");
  std::vector<std::int64_t> indptr = file.read<std::int64_t>(group + "/indptr");
  std::vector<std::int64_t> shape = file.read<std::int64_t>(group + "/shape");
  if (shape.size() != 2 || indptr.size() != static_cast<std::size_t>(shape[1]) + 1 ||
      indices.size() != data.size() || indptr.back() != static_cast<std::int64_t>(data.size())) {
    throw std::runtime_error(file.where(group) + ": inconsistent CSC arrays");
  }
  std::vector<Eigen::Triplet<float>> trip;
  trip.reserve(data.size());
  for (std::int64_t j = 0; j < shape[1]; ++j) {
    for (std::int64_t q = indptr[static_cast<std::size_t>(j)]; q < indptr[static_cast<std::size_t>(j) + 1]; ++q) {
      const std::int64_t r = indices[static_cast<std::size_t>(q)];
      if (r < 0 || r >= shape[0]) throw std::runtime_error(file.where(group) + ": row index out of range");
      trip.emplace_back(static_cast<int>(r), static_cast<int>(j), data[static_cast<std::size_t>(q)]);
    }
  }
  Eigen::SparseMatrix<float> m(shape[0], shape[1]);
  m.setFromTriplets(trip.begin(), trip.end());
  return m;
}

}  // namespace rtnmf::io
