#include "engine/runtime/result_file_sink.h"

#include <hdf5.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace rtnmf {

namespace {

// Writes a K × n block (row-major) into columns [t0, t0 + n) of the K × T dataset `d`.
void write_columns(hid_t d, const std::string& where, const float* block, hsize_t k, hsize_t t0,
                   hsize_t n) {
  hid_t space = H5Dget_space(d);
  hsize_t start[2] = {0, t0}, count[2] = {k, n};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  hid_t mem = H5Screate_simple(2, count, nullptr);
  herr_t rc = H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, block);
  H5Sclose(mem);
  H5Sclose(space);
  if (rc < 0) throw std::runtime_error(where + ": cannot write columns");
}

}  // namespace

ResultFileSink::ResultFileSink(const std::string& path, std::string prefix)
    : path_(path), tmp_path_(path + ".rows.tmp"), prefix_(std::move(prefix)) {
  // Whether the file could be created, without creating it: a run that fails to start (a
  // missing input, a bad pipeline) must not truncate an earlier result at this path.
  const std::filesystem::path p(path_);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  std::error_code ec;
  const bool exists = std::filesystem::exists(p, ec);
  if (exists && std::filesystem::is_directory(p, ec))
    throw std::runtime_error("h5: cannot create '" + path_ + "' (a directory)");
  if (::access(exists ? path_.c_str() : dir.c_str(), W_OK) != 0)
    throw std::runtime_error("h5: cannot create '" + path_ + "' (" + std::strerror(errno) + ")");
}

io::h5::File& ResultFileSink::file() {
  if (!file_) file_ = std::make_unique<io::h5::File>(io::h5::File::create(path_));
  return *file_;
}

ResultFileSink::~ResultFileSink() {
  recorded_.clear();
  tmp_.reset();
  std::remove(tmp_path_.c_str());
}

void ResultFileSink::begin(const StreamSpec& spec) {
  file();  // created (truncated) now that the stream runs
  for (size_t i = 0; i < spec.lanes.size(); ++i) {
    const LaneSpec& l = spec.lanes[i];
    if (l.dataset.empty()) continue;
    Recorded r;
    r.lane = static_cast<int>(i);
    r.dataset = prefix_ + l.dataset;
    r.component_major = l.component_major;
    r.per_column = i == 0 || l.column_width > 0;
    r.width = (i == 0) ? spec.rows : (l.column_width > 0 ? l.column_width : l.size);
    r.max_filled = 0;
    if (r.component_major) {
      if (!tmp_) tmp_ = std::make_unique<io::h5::File>(io::h5::File::create(tmp_path_));
      r.rows = std::make_unique<io::h5::Appendable<float>>(*tmp_, "/values" + r.dataset, io::h5::Dims{}, kPendingValues);
      r.counts = std::make_unique<io::h5::Appendable<std::int64_t>>(*tmp_, "/counts" + r.dataset, io::h5::Dims{}, kPendingCounts);
      r.pending_values.reserve(kPendingValues);
      r.pending_counts.reserve(kPendingCounts);
    } else {
      r.row.assign(r.width, 0.f);
      r.rows = std::make_unique<io::h5::Appendable<float>>(*file_, r.dataset,
                                                           io::h5::Dims{r.width}, 256);
    }
    recorded_.push_back(std::move(r));
  }
  latency_ = std::make_unique<io::h5::Appendable<std::int64_t>>(
      *file_, prefix_ + "/timing/latency_ns", io::h5::Dims{}, 1024);
  seq_ = std::make_unique<io::h5::Appendable<std::int64_t>>(*file_, prefix_ + "/timing/seq",
                                                            io::h5::Dims{}, 1024);
}

void ResultFileSink::flush_pending(Recorded& r) {
  if (!r.pending_values.empty()) r.rows->append_rows(r.pending_values.data(), r.pending_values.size());
  if (!r.pending_counts.empty()) r.counts->append_rows(r.pending_counts.data(), r.pending_counts.size());
  r.pending_values.clear();
  r.pending_counts.clear();
}

void ResultFileSink::write(const Frame& f) {
  for (Recorded& r : recorded_) {
    const Lane& lane = f.lane(r.lane);
    if (r.component_major) {
      // Each time step's filled values only: a column of lane 0's rows × cols block, or the lane.
      const std::uint32_t rows = r.per_column ? (r.lane == 0 ? f.header.rows : r.width) : lane.size;
      const std::uint32_t steps = r.per_column ? f.header.cols : 1;
      const std::int64_t n = std::min(rows, r.width);
      for (std::uint32_t c = 0; c < steps; ++c) {
        if (r.pending_values.size() + static_cast<std::size_t>(n) > r.pending_values.capacity() ||
            r.pending_counts.size() == r.pending_counts.capacity())
          flush_pending(r);
        if (static_cast<std::size_t>(n) > r.pending_values.capacity()) {  // wider than the buffer
          r.rows->append_rows(lane.data + static_cast<size_t>(c) * rows, static_cast<std::uint64_t>(n));
        } else {
          const float* v = lane.data + static_cast<size_t>(c) * rows;
          r.pending_values.insert(r.pending_values.end(), v, v + n);
        }
        r.pending_counts.push_back(n);
      }
      r.max_filled = std::max(r.max_filled, static_cast<std::uint32_t>(n));
    } else if (r.per_column) {
      // Each column of the rows × cols block is one time step.
      const std::uint32_t rows = r.lane == 0 ? f.header.rows : r.width;
      for (std::uint32_t c = 0; c < f.header.cols; ++c) {
        std::fill(r.row.begin(), r.row.end(), 0.f);
        std::copy(lane.data + static_cast<size_t>(c) * rows,
                  lane.data + static_cast<size_t>(c) * rows + std::min(rows, r.width),
                  r.row.begin());
        r.max_filled = std::max(r.max_filled, std::min(rows, r.width));
        r.rows->append_row(r.row.data());
      }
    } else {
      const std::uint32_t n = std::min(lane.size, r.width);
      std::fill(r.row.begin() + n, r.row.end(), 0.f);
      std::copy(lane.data, lane.data + n, r.row.begin());
      r.max_filled = std::max(r.max_filled, n);
      r.rows->append_row(r.row.data());
    }
  }
  const std::int64_t lat = f.header.t_processed_ns - f.header.t_received_ns;
  latency_->append_row(&lat);
  const auto seq = static_cast<std::int64_t>(f.header.seq);
  seq_->append_row(&seq);
  ++frames_;
}

void ResultFileSink::end() {
  constexpr std::uint64_t kBlock = 2048;
  std::vector<float> values, cols;
  std::vector<std::int64_t> counts;
  for (Recorded& r : recorded_) {
    if (!r.component_major) continue;
    flush_pending(r);
    const std::uint64_t t_total = r.counts->rows();
    const hsize_t k = r.max_filled;
    const std::string where = file_->where(r.dataset);
    // Create the K × T dataset (chunked along T) and fill it block by block.
    const std::string parent = r.dataset.substr(0, r.dataset.rfind('/'));
    if (!parent.empty()) file_->create_group(parent);
    hsize_t dims[2] = {k, t_total};
    hid_t space = H5Screate_simple(2, dims, nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (k > 0 && t_total > 0) {
      hsize_t chunk[2] = {std::min<hsize_t>(k, 64), std::min<hsize_t>(t_total, 1024)};
      H5Pset_chunk(dcpl, 2, chunk);
    }
    hid_t d = H5Dcreate2(file_->id(), r.dataset.c_str(), H5T_NATIVE_FLOAT, space, H5P_DEFAULT,
                         dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (d < 0) throw std::runtime_error(where + ": cannot create dataset");
    try {
      std::uint64_t offset = 0;  // of the block's first value in the flat stream
      for (std::uint64_t t0 = 0; t0 < t_total && k > 0; t0 += kBlock) {
        const std::uint64_t n = std::min(kBlock, t_total - t0);
        counts.resize(n);
        tmp_->read_rows<std::int64_t>("/counts" + r.dataset, t0, n, counts.data());
        std::uint64_t total = 0;
        for (std::int64_t c : counts) total += static_cast<std::uint64_t>(c);
        values.resize(total);
        if (total > 0) tmp_->read_rows<float>("/values" + r.dataset, offset, total, values.data());
        offset += total;
        cols.assign(k * n, 0.0f);
        for (std::uint64_t t = 0, at = 0; t < n; at += static_cast<std::uint64_t>(counts[t]), ++t)
          for (std::int64_t c = 0; c < counts[t]; ++c) cols[static_cast<std::uint64_t>(c) * n + t] = values[at + static_cast<std::uint64_t>(c)];
        write_columns(d, where, cols.data(), k, t0, n);
      }
    } catch (...) {
      H5Dclose(d);
      throw;
    }
    H5Dclose(d);
  }
  recorded_.clear();
  latency_.reset();
  seq_.reset();
  tmp_.reset();
  std::remove(tmp_path_.c_str());
  file_->flush();
}

}  // namespace rtnmf
