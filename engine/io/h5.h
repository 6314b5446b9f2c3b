// A small HDF5 wrapper (C library underneath) shared by the tools, the recorders and the tests.
//
//   rtnmf::io::h5::File f = File::create("out.h5");          // truncates
//   f.write<float>("/model/W", W.data(), {rows, cols});      // row-major, groups made as needed
//   f.write_matrix("/model/H", H);                           // Eigen (any order) -> rows x cols
//   f.set_attr("/model", "loss", std::string("kl"));         // string / double / int64
//   Eigen::MatrixXf W2 = f.read_matrix<float>("/model/W");
//   std::vector<std::uint64_t> d = f.dims("/movie");         // e.g. {T, H, W}
//   f.read_slab<uint16_t>("/movie", {t, 0, 0}, {1, H, W}, frame.data());   // one frame of T x H x W
//   f.read_slab<uint16_t>("/movie_hwt", {0, 0, t}, {H, W, 1}, frame.data()); // one frame of H x W x T
//   Appendable<float> act(f, "/act", {K});                   // unlimited first dim, chunked
//   act.append_row(h.data());                                // stream rows, memory stays flat
//
// Conventions
// - Every dataset is row-major (C order) on disk with the dims given, exactly like NumPy / h5py.
//   write_matrix stores an Eigen matrix as rows x cols whatever its storage order.
// - Element types: float, double, int64_t, int32_t, uint16_t, uint8_t. Reading converts from the
//   stored type to the requested one (HDF5 does the conversion), e.g. read<float> of a uint16 movie.
// - Paths are absolute ("/a/b/c") or relative to the root; intermediate groups are created on write.
//   Writing a dataset that exists replaces it. Attributes may sit on the file ("/"), groups or
//   datasets; setting an existing attribute replaces it.
// - Errors throw std::runtime_error whose message names the file and the object path, plus the
//   innermost HDF5 error description. HDF5's automatic printing of its error stack is switched off
//   (H5Eset_auto) the first time any File is opened.
// - Threads: the Debian HDF5 library is not thread-safe. Use one File (and its Appendables) from one
//   thread at a time, and do not use HDF5 from two threads at once anywhere in the process.
// - Allocation: every call may allocate (HDF5 does internally); none of this is for a hot path.
//   Appendable::append_rows allocates a few small vectors per call (and HDF5 allocates inside).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

namespace rtnmf::io::h5 {

using Dims = std::vector<std::uint64_t>;

// Owns one hid_t and closes it with the right H5*close on destruction. Move-only.
class Handle {
 public:
  using Closer = int (*)(std::int64_t);  // hid_t is int64_t in HDF5 1.10
  Handle() = default;
  Handle(std::int64_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  std::int64_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  std::int64_t id_ = -1;
  Closer closer_ = nullptr;
};

// The element types the wrapper reads and writes.
template <typename T>
inline constexpr bool kIsElement =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::uint16_t> ||
    std::is_same_v<T, std::uint8_t>;

class File {
 public:
  enum class Mode { kReadOnly, kReadWrite };

  // Opens an existing file. Throws naming the file when it is missing or not HDF5.
  static File open(const std::string& filename, Mode mode = Mode::kReadOnly);
  // Creates (truncating) a file. Throws naming the file when it cannot be created.
  static File create(const std::string& filename);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  ~File() = default;

  const std::string& filename() const { return filename_; }
  std::int64_t id() const { return file_.get(); }
  // Flushes buffers to disk. Throws on I/O error.
  void flush();

  // True when every component of `path` exists (group, dataset or named type).
  bool exists(const std::string& path) const;
  bool is_dataset(const std::string& path) const;
  // Creates the group and any missing parents; no-op when it exists.
  void create_group(const std::string& path);
  // Names of the direct children of a group, in creation/name order.
  std::vector<std::string> list(const std::string& group_path) const;

  // Dimensions of a dataset. Throws naming file and path when it is not a dataset.
  Dims dims(const std::string& path) const;

  // Writes (replacing) a dataset of the given dims from row-major data (product(dims) elements).
  template <typename T>
  void write(const std::string& path, const T* data, const Dims& dims);
  template <typename T>
  void write(const std::string& path, const std::vector<T>& data, const Dims& dims) {
    write<T>(path, data.data(), dims);
  }
  // Writes an Eigen matrix (any storage order) as a rows x cols dataset.
  template <typename Derived>
  void write_matrix(const std::string& path, const Eigen::DenseBase<Derived>& m);
  // Writes an Eigen vector as a 1-d dataset.
  template <typename Derived>
  void write_vector(const std::string& path, const Eigen::DenseBase<Derived>& v);

  // Reads a whole dataset (converted to T), row-major; `dims_out` receives its dims when given.
  template <typename T>
  std::vector<T> read(const std::string& path, Dims* dims_out = nullptr) const;
  // Reads a 2-d dataset (or 1-d as a column) into an Eigen column-major matrix.
  template <typename T>
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> read_matrix(const std::string& path) const;

  // Reads the hyperslab [start, start + count) (one entry per dimension) into `out`, which must
  // hold product(count) elements, row-major. Works for any axis order: e.g. one frame of an
  // H x W x T movie is start {0,0,t}, count {H,W,1}. Throws on out-of-range.
  template <typename T>
  void read_slab(const std::string& path, const Dims& start, const Dims& count, T* out) const;
  // Reads rows [first, first + n) along the first dimension into `out` (n * row_size elements).
  template <typename T>
  void read_rows(const std::string& path, std::uint64_t first, std::uint64_t n, T* out) const;

  // Renames (moves) a group or dataset, creating the destination's missing parents. Throws
  // naming both paths when `from` is missing or `to` exists.
  void move(const std::string& from, const std::string& to);
  // Splits the rows of the 2-d float dataset `path` (K x T): rows `keep` stay, in that order, as
  // rows 0..keep.size()-1 (the dataset shrinks to them); rows `moved` become the new dataset
  // `moved_path` (moved.size() x T, parents created; not written when `moved` is empty). Works
  // column block by column block, so memory stays K x 2048 floats whatever T. A chunked dataset
  // is rewritten in place; a contiguous one (made by write(), small) is replaced. Throws naming
  // file and path when the dataset is not 2-d or a row index is out of range.
  void split_rows(const std::string& path, const std::vector<std::uint64_t>& keep,
                  const std::string& moved_path, const std::vector<std::uint64_t>& moved);

  // Attributes on "/" (the file), a group or a dataset. Setting replaces.
  void set_attr(const std::string& obj_path, const std::string& name, const std::string& value);
  void set_attr(const std::string& obj_path, const std::string& name, const char* value) {
    set_attr(obj_path, name, std::string(value));
  }
  void set_attr(const std::string& obj_path, const std::string& name, double value);
  void set_attr(const std::string& obj_path, const std::string& name, std::int64_t value);
  bool has_attr(const std::string& obj_path, const std::string& name) const;
  // Readers throw naming file, object and attribute when missing or of an incompatible class.
  std::string attr_string(const std::string& obj_path, const std::string& name) const;
  double attr_double(const std::string& obj_path, const std::string& name) const;
  std::int64_t attr_int64(const std::string& obj_path, const std::string& name) const;

  // Low level: open a dataset (throws naming file and path). Used by Appendable.
  Handle open_dataset(const std::string& path) const;
  // "file.h5:/path" prefix for messages.
  std::string where(const std::string& path) const;

 private:
  File(std::string filename, Handle file) : filename_(std::move(filename)), file_(std::move(file)) {}
  void write_raw(const std::string& path, std::int64_t mem_type, const void* data, const Dims& dims);
  void read_raw(const std::string& path, std::int64_t mem_type, void* out, std::uint64_t capacity,
                Dims* dims_out) const;
  void read_slab_raw(const std::string& path, std::int64_t mem_type, const Dims& start,
                     const Dims& count, void* out) const;
  Handle open_object(const std::string& obj_path) const;
  void write_attr_raw(const std::string& obj_path, const std::string& name, std::int64_t mem_type,
                      const void* value);

  std::string filename_;
  Handle file_;
};

// A dataset with an unlimited first dimension that grows by rows: for streaming results (traces,
// activations, timestamps) to disk without holding T-long arrays in memory. Row shape is fixed
// (`row_dims`, empty for a 1-d dataset of scalars). If the dataset exists with the same row shape,
// appending continues at its end. The File must outlive the Appendable. Same thread rules as File.
template <typename T>
class Appendable {
  static_assert(kIsElement<T>, "unsupported HDF5 element type");

 public:
  // Creates or reopens `path`. chunk_rows sets the chunking along the first dimension. Throws
  // naming file and path on a shape mismatch or HDF5 failure.
  Appendable(File& file, const std::string& path, const Dims& row_dims,
             std::uint64_t chunk_rows = 256);
  // Appends one row (product(row_dims) elements). Throws on HDF5 failure.
  void append_row(const T* row) { append_rows(row, 1); }
  // Appends n rows, row-major.
  void append_rows(const T* rows, std::uint64_t n);
  std::uint64_t rows() const { return rows_; }
  std::uint64_t row_size() const { return row_size_; }
  // Bytes of HDF5's chunk cache for this dataset: two chunks, at most 1 MiB (finished chunks
  // are never read back, so a larger cache would only hold memory that grows with the stream).
  std::size_t chunk_cache_bytes() const;

 private:
  File* file_;
  std::string path_;
  Handle dset_;
  Dims row_dims_;
  std::uint64_t row_size_ = 1;
  std::uint64_t rows_ = 0;
};

// Convenience names.
using Appendable1D = Appendable<float>;  // rows of K floats, or scalars when row_dims is empty
using AppendableInt64 = Appendable<std::int64_t>;

namespace detail {
// The HDF5 native memory type for T (H5T_NATIVE_FLOAT etc.).
template <typename T>
std::int64_t native_type();
}  // namespace detail

// ---- template implementations ----

template <typename T>
void File::write(const std::string& path, const T* data, const Dims& dims) {
  static_assert(kIsElement<T>, "unsupported HDF5 element type");
  write_raw(path, detail::native_type<T>(), data, dims);
}

template <typename Derived>
void File::write_matrix(const std::string& path, const Eigen::DenseBase<Derived>& m) {
  using T = typename Derived::Scalar;
  static_assert(kIsElement<T>, "unsupported HDF5 element type");
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row_major = m;
  write<T>(path, row_major.data(),
           {static_cast<std::uint64_t>(m.rows()), static_cast<std::uint64_t>(m.cols())});
}

template <typename Derived>
void File::write_vector(const std::string& path, const Eigen::DenseBase<Derived>& v) {
  using T = typename Derived::Scalar;
  static_assert(kIsElement<T>, "unsupported HDF5 element type");
  Eigen::Matrix<T, Eigen::Dynamic, 1> copy = v;
  write<T>(path, copy.data(), {static_cast<std::uint64_t>(copy.size())});
}

template <typename T>
std::vector<T> File::read(const std::string& path, Dims* dims_out) const {
  static_assert(kIsElement<T>, "unsupported HDF5 element type");
  Dims d = dims(path);
  std::uint64_t n = 1;
  for (auto x : d) n *= x;
  std::vector<T> out(n);
  read_raw(path, detail::native_type<T>(), out.data(), n, nullptr);
  if (dims_out) *dims_out = d;
  return out;
}

template <typename T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> File::read_matrix(const std::string& path) const {
  Dims d;
  std::vector<T> flat = read<T>(path, &d);
  if (d.size() != 1 && d.size() != 2) {
    throw std::runtime_error(where(path) + ": expected a 1-d or 2-d dataset, found " +
                             std::to_string(d.size()) + " dimensions");
  }
  const Eigen::Index rows = static_cast<Eigen::Index>(d[0]);
  const Eigen::Index cols = d.size() == 2 ? static_cast<Eigen::Index>(d[1]) : 1;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> m =
      Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          flat.data(), rows, cols);
  return m;
}

template <typename T>
void File::read_slab(const std::string& path, const Dims& start, const Dims& count, T* out) const {
  static_assert(kIsElement<T>, "unsupported HDF5 element type");
  read_slab_raw(path, detail::native_type<T>(), start, count, out);
}

template <typename T>
void File::read_rows(const std::string& path, std::uint64_t first, std::uint64_t n, T* out) const {
  Dims d = dims(path);
  if (d.empty()) throw std::runtime_error(where(path) + ": scalar dataset has no rows");
  Dims start(d.size(), 0), count = d;
  start[0] = first;
  count[0] = n;
  read_slab<T>(path, start, count, out);
}

}  // namespace rtnmf::io::h5
