// HDF5 wrapper: see h5.h for the contract.
#include "engine/io/h5.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace rtnmf::io::h5 {

static_assert(std::is_same_v<hid_t, std::int64_t>, "h5.h assumes hid_t is int64_t (HDF5 >= 1.10)");
static_assert(sizeof(hsize_t) == sizeof(std::uint64_t));

namespace detail {
template <>
std::int64_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <>
std::int64_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <>
std::int64_t native_type<std::int64_t>() { return H5T_NATIVE_INT64; }
template <>
std::int64_t native_type<std::int32_t>() { return H5T_NATIVE_INT32; }
template <>
std::int64_t native_type<std::uint16_t>() { return H5T_NATIVE_UINT16; }
template <>
std::int64_t native_type<std::uint8_t>() { return H5T_NATIVE_UINT8; }
}  // namespace detail

namespace {

void silence_hdf5() {
  // Per-thread in thread-safe builds, global otherwise: calling it each time a File is made is
  // cheap and covers the thread that uses the file.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  // The innermost error (n == 0) says what the user did wrong most directly.
  if (n == 0 && err->desc) *out = err->desc;
  return 0;
}

// The innermost message on HDF5's error stack, cleared afterwards; empty when none.
std::string hdf5_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason;
}

[[noreturn]] void fail(const std::string& what) {
  std::string reason = hdf5_reason();
  throw std::runtime_error(reason.empty() ? what : what + " (" + reason + ")");
}

int close_file(std::int64_t id) { return H5Fclose(id); }
int close_group(std::int64_t id) { return H5Gclose(id); }
int close_dataset(std::int64_t id) { return H5Dclose(id); }
int close_space(std::int64_t id) { return H5Sclose(id); }
int close_type(std::int64_t id) { return H5Tclose(id); }
int close_attr(std::int64_t id) { return H5Aclose(id); }
int close_plist(std::int64_t id) { return H5Pclose(id); }
int close_object(std::int64_t id) { return H5Oclose(id); }

std::string normalize(const std::string& path) {
  if (path.empty()) return "/";
  return path[0] == '/' ? path : "/" + path;
}

// Splits "/a/b/c" into {"a","b","c"}.
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::uint64_t product(const Dims& d) {
  std::uint64_t n = 1;
  for (auto x : d) n *= x;
  return n;
}

Handle lcpl_with_parents() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), close_plist);
  if (!lcpl.valid()) fail("h5: cannot create a link property list");
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return lcpl;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = std::exchange(o.id_, -1);
    closer_ = o.closer_;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = -1;
}

File File::open(const std::string& filename, Mode mode) {
  silence_hdf5();
  // H5Fopen on a missing file gives a long-winded stack; say the plain thing first.
  if (std::FILE* f = std::fopen(filename.c_str(), "rb")) {
    std::fclose(f);
  } else {
    throw std::runtime_error("h5: cannot open '" + filename + "': no such file or not readable");
  }
  if (H5Fis_hdf5(filename.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw std::runtime_error("h5: '" + filename + "' is not an HDF5 file");
  }
  hid_t id = H5Fopen(filename.c_str(), mode == Mode::kReadOnly ? H5F_ACC_RDONLY : H5F_ACC_RDWR,
                     H5P_DEFAULT);
  if (id < 0) fail("h5: cannot open '" + filename + "'");
  return File(filename, Handle(id, close_file));
}

File File::create(const std::string& filename) {
  silence_hdf5();
  hid_t id = H5Fcreate(filename.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail("h5: cannot create '" + filename + "'");
  return File(filename, Handle(id, close_file));
}

std::string File::where(const std::string& path) const {
  return "h5: " + filename_ + ":" + normalize(path);
}

void File::flush() {
  if (H5Fflush(file_.get(), H5F_SCOPE_LOCAL) < 0) fail("h5: cannot flush '" + filename_ + "'");
}

bool File::exists(const std::string& path) const {
  std::string prefix;
  for (const std::string& c : components(path)) {
    prefix += "/" + c;
    htri_t r = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
    if (r <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return true;
}

bool File::is_dataset(const std::string& path) const {
  if (!exists(path)) return false;
  H5O_info_t info;
  if (H5Oget_info_by_name(file_.get(), normalize(path).c_str(), &info, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return info.type == H5O_TYPE_DATASET;
}

void File::create_group(const std::string& path) {
  if (components(path).empty() || exists(path)) return;
  Handle lcpl = lcpl_with_parents();
  Handle g(H5Gcreate2(file_.get(), normalize(path).c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
           close_group);
  if (!g.valid()) fail(where(path) + ": cannot create group");
}

std::vector<std::string> File::list(const std::string& group_path) const {
  Handle g(H5Gopen2(file_.get(), normalize(group_path).c_str(), H5P_DEFAULT), close_group);
  if (!g.valid()) fail(where(group_path) + ": no such group");
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) fail(where(group_path) + ": cannot query group");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0,
                                   H5P_DEFAULT);
    if (n < 0) fail(where(group_path) + ": cannot list group");
    std::string name(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1,
                       H5P_DEFAULT);
    out.push_back(name);
  }
  return out;
}

Handle File::open_dataset(const std::string& path) const {
  if (!exists(path)) throw std::runtime_error(where(path) + ": no such dataset");
  Handle d(H5Dopen2(file_.get(), normalize(path).c_str(), H5P_DEFAULT), close_dataset);
  if (!d.valid()) fail(where(path) + ": not a dataset");
  return d;
}

Handle File::open_object(const std::string& obj_path) const {
  if (!exists(obj_path)) throw std::runtime_error(where(obj_path) + ": no such object");
  Handle o(H5Oopen(file_.get(), normalize(obj_path).c_str(), H5P_DEFAULT), close_object);
  if (!o.valid()) fail(where(obj_path) + ": cannot open object");
  return o;
}

Dims File::dims(const std::string& path) const {
  Handle d = open_dataset(path);
  Handle space(H5Dget_space(d.get()), close_space);
  if (!space.valid()) fail(where(path) + ": cannot get dataspace");
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(where(path) + ": cannot get rank");
  Dims out(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), reinterpret_cast<hsize_t*>(out.data()), nullptr);
  return out;
}

void File::write_raw(const std::string& path, std::int64_t mem_type, const void* data,
                     const Dims& dims) {
  if (components(path).empty()) throw std::runtime_error(where(path) + ": empty dataset name");
  if (exists(path)) {
    if (H5Ldelete(file_.get(), normalize(path).c_str(), H5P_DEFAULT) < 0)
      fail(where(path) + ": cannot replace existing dataset");
  }
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()),
                                               reinterpret_cast<const hsize_t*>(dims.data()),
                                               nullptr),
               close_space);
  if (!space.valid()) fail(where(path) + ": cannot create dataspace");
  Handle lcpl = lcpl_with_parents();
  Handle d(H5Dcreate2(file_.get(), normalize(path).c_str(), mem_type, space.get(), lcpl.get(),
                      H5P_DEFAULT, H5P_DEFAULT),
           close_dataset);
  if (!d.valid()) fail(where(path) + ": cannot create dataset");
  if (product(dims) > 0 &&
      H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(where(path) + ": cannot write dataset");
}

void File::read_raw(const std::string& path, std::int64_t mem_type, void* out,
                    std::uint64_t capacity, Dims* dims_out) const {
  Dims d = dims(path);
  if (product(d) > capacity)
    throw std::runtime_error(where(path) + ": dataset larger than the buffer given");
  Handle ds = open_dataset(path);
  if (product(d) > 0 && H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    fail(where(path) + ": cannot read dataset (type not convertible?)");
  if (dims_out) *dims_out = d;
}

void File::read_slab_raw(const std::string& path, std::int64_t mem_type, const Dims& start,
                         const Dims& count, void* out) const {
  Dims d = dims(path);
  if (start.size() != d.size() || count.size() != d.size())
    throw std::runtime_error(where(path) + ": hyperslab has " + std::to_string(start.size()) +
                             " dimensions, dataset has " + std::to_string(d.size()));
  for (size_t i = 0; i < d.size(); ++i) {
    if (start[i] + count[i] > d[i])
      throw std::runtime_error(where(path) + ": hyperslab [" + std::to_string(start[i]) + ", " +
                               std::to_string(start[i] + count[i]) + ") out of range " +
                               std::to_string(d[i]) + " in dimension " + std::to_string(i));
  }
  if (product(count) == 0) return;
  Handle ds = open_dataset(path);
  Handle file_space(H5Dget_space(ds.get()), close_space);
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET,
                          reinterpret_cast<const hsize_t*>(start.data()), nullptr,
                          reinterpret_cast<const hsize_t*>(count.data()), nullptr) < 0)
    fail(where(path) + ": cannot select hyperslab");
  Handle mem_space(H5Screate_simple(static_cast<int>(count.size()),
                                    reinterpret_cast<const hsize_t*>(count.data()), nullptr),
                   close_space);
  if (H5Dread(ds.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
    fail(where(path) + ": cannot read hyperslab");
}

void File::move(const std::string& from, const std::string& to) {
  Handle lcpl = lcpl_with_parents();
  if (H5Lmove(file_.get(), normalize(from).c_str(), file_.get(), normalize(to).c_str(), lcpl.get(), H5P_DEFAULT) < 0)
    fail(where(from) + ": cannot move to " + normalize(to));
}

void File::split_rows(const std::string& path, const std::vector<std::uint64_t>& keep,
                      const std::string& moved_path, const std::vector<std::uint64_t>& moved) {
  const Dims d = dims(path);
  if (d.size() != 2)
    throw std::runtime_error(where(path) + ": has " + std::to_string(d.size()) + " dimensions, rows need 2");
  const std::uint64_t K = d[0], T = d[1];
  for (const std::vector<std::uint64_t>* rows : {&keep, &moved})
    for (std::uint64_t r : *rows)
      if (r >= K)
        throw std::runtime_error(where(path) + ": row " + std::to_string(r) + " requested but the dataset has " +
                                 std::to_string(K));
  const std::uint64_t nk = keep.size(), nm = moved.size();
  Handle ds = open_dataset(path);
  Handle dcpl(H5Dget_create_plist(ds.get()), close_plist);
  const bool chunked = dcpl.valid() && H5Pget_layout(dcpl.get()) == H5D_CHUNKED;
  // The moved rows' dataset, chunked along T as the streamed results are.
  Handle out;
  if (nm > 0) {
    if (exists(moved_path) && H5Ldelete(file_.get(), normalize(moved_path).c_str(), H5P_DEFAULT) < 0)
      fail(where(moved_path) + ": cannot replace existing dataset");
    hsize_t md[2] = {nm, T};
    Handle space(H5Screate_simple(2, md, nullptr), close_space);
    Handle ocpl(H5Pcreate(H5P_DATASET_CREATE), close_plist);
    if (T > 0) {
      hsize_t chunk[2] = {std::min<hsize_t>(nm, 64), std::min<hsize_t>(T, 1024)};
      H5Pset_chunk(ocpl.get(), 2, chunk);
    }
    Handle lcpl = lcpl_with_parents();
    out = Handle(H5Dcreate2(file_.get(), normalize(moved_path).c_str(), H5T_NATIVE_FLOAT, space.get(), lcpl.get(),
                            ocpl.get(), H5P_DEFAULT),
                 close_dataset);
    if (!out.valid()) fail(where(moved_path) + ": cannot create dataset");
  }
  // Rows [0, n) x columns [t0, t0 + c) of dataset `id` from/to a row-major n x c buffer.
  auto columns = [&](std::int64_t id, const std::string& name, float* buf, hsize_t n, hsize_t t0, hsize_t c,
                     bool write) {
    Handle space(H5Dget_space(id), close_space);
    hsize_t start[2] = {0, t0}, count[2] = {n, c};
    H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    Handle mem(H5Screate_simple(2, count, nullptr), close_space);
    const herr_t rc = write ? H5Dwrite(id, H5T_NATIVE_FLOAT, mem.get(), space.get(), H5P_DEFAULT, buf)
                            : H5Dread(id, H5T_NATIVE_FLOAT, mem.get(), space.get(), H5P_DEFAULT, buf);
    if (rc < 0) fail(where(name) + (write ? ": cannot write rows" : ": cannot read rows"));
  };
  const std::uint64_t block = chunked ? 2048 : std::max<std::uint64_t>(T, 1);
  std::vector<float> all, kept, gone;  // contiguous: one block, the kept rows written at the end
  for (std::uint64_t t0 = 0; t0 < T && K > 0; t0 += block) {
    const std::uint64_t c = std::min(block, T - t0);
    all.resize(K * c);
    columns(ds.get(), path, all.data(), K, t0, c, false);
    kept.resize(nk * c);
    gone.resize(nm * c);
    for (std::uint64_t i = 0; i < nk; ++i) std::memcpy(&kept[i * c], &all[keep[i] * c], c * sizeof(float));
    for (std::uint64_t i = 0; i < nm; ++i) std::memcpy(&gone[i * c], &all[moved[i] * c], c * sizeof(float));
    if (nm > 0) columns(out.get(), moved_path, gone.data(), nm, t0, c, true);
    if (chunked && nk > 0) {
      // The block was read whole before any of it is written: in place is safe in any order.
      columns(ds.get(), path, kept.data(), nk, t0, c, true);
    }
  }
  if (chunked) {
    hsize_t nd[2] = {nk, T};
    if (H5Dset_extent(ds.get(), nd) < 0) fail(where(path) + ": cannot shrink to " + std::to_string(nk) + " rows");
  } else {
    ds.reset();
    kept.resize(nk * T);  // zero rows or frames: nothing was read
    write_raw(path, H5T_NATIVE_FLOAT, kept.data(), Dims{nk, T});
  }
}

void File::write_attr_raw(const std::string& obj_path, const std::string& name,
                          std::int64_t type, const void* value) {
  Handle obj = open_object(obj_path);
  if (H5Aexists(obj.get(), name.c_str()) > 0) H5Adelete(obj.get(), name.c_str());
  Handle space(H5Screate(H5S_SCALAR), close_space);
  Handle a(H5Acreate2(obj.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
           close_attr);
  if (!a.valid()) fail(where(obj_path) + ": cannot create attribute '" + name + "'");
  if (H5Awrite(a.get(), type, value) < 0)
    fail(where(obj_path) + ": cannot write attribute '" + name + "'");
}

void File::set_attr(const std::string& obj_path, const std::string& name,
                    const std::string& value) {
  // Fixed-length, null-terminated, UTF-8: what h5py writes for np.bytes_ and reads back as str.
  Handle type(H5Tcopy(H5T_C_S1), close_type);
  H5Tset_size(type.get(), value.size() + 1);
  H5Tset_strpad(type.get(), H5T_STR_NULLTERM);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  write_attr_raw(obj_path, name, type.get(), value.c_str());
}

void File::set_attr(const std::string& obj_path, const std::string& name, double value) {
  write_attr_raw(obj_path, name, H5T_NATIVE_DOUBLE, &value);
}

void File::set_attr(const std::string& obj_path, const std::string& name, std::int64_t value) {
  write_attr_raw(obj_path, name, H5T_NATIVE_INT64, &value);
}

bool File::has_attr(const std::string& obj_path, const std::string& name) const {
  if (!exists(obj_path) && components(obj_path).size() > 0) return false;
  Handle obj = open_object(obj_path);
  htri_t r = H5Aexists(obj.get(), name.c_str());
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

namespace {
Handle open_attr(const File& f, const Handle& obj, const std::string& obj_path,
                 const std::string& name) {
  if (H5Aexists(obj.get(), name.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw std::runtime_error(f.where(obj_path) + ": no attribute '" + name + "'");
  }
  Handle a(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT), close_attr);
  if (!a.valid()) fail(f.where(obj_path) + ": cannot open attribute '" + name + "'");
  return a;
}
}  // namespace

std::string File::attr_string(const std::string& obj_path, const std::string& name) const {
  Handle obj = open_object(obj_path);
  Handle a = open_attr(*this, obj, obj_path, name);
  Handle type(H5Aget_type(a.get()), close_type);
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw std::runtime_error(where(obj_path) + ": attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), close_type);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* s = nullptr;
    if (H5Aread(a.get(), mem.get(), &s) < 0)
      fail(where(obj_path) + ": cannot read attribute '" + name + "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(type.get());
  std::string buf(n + 1, '\0');
  Handle mem(H5Tcopy(type.get()), close_type);
  if (H5Aread(a.get(), mem.get(), buf.data()) < 0)
    fail(where(obj_path) + ": cannot read attribute '" + name + "'");
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

double File::attr_double(const std::string& obj_path, const std::string& name) const {
  Handle obj = open_object(obj_path);
  Handle a = open_attr(*this, obj, obj_path, name);
  Handle type(H5Aget_type(a.get()), close_type);
  H5T_class_t c = H5Tget_class(type.get());
  if (c != H5T_FLOAT && c != H5T_INTEGER)
    throw std::runtime_error(where(obj_path) + ": attribute '" + name + "' is not numeric");
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0)
    fail(where(obj_path) + ": cannot read attribute '" + name + "'");
  return v;
}

std::int64_t File::attr_int64(const std::string& obj_path, const std::string& name) const {
  Handle obj = open_object(obj_path);
  Handle a = open_attr(*this, obj, obj_path, name);
  Handle type(H5Aget_type(a.get()), close_type);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw std::runtime_error(where(obj_path) + ": attribute '" + name + "' is not an integer");
  std::int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0)
    fail(where(obj_path) + ": cannot read attribute '" + name + "'");
  return v;
}

// ---- Appendable ----

namespace {
// Dataset access for an appended dataset: a chunk cache of two chunks (at most HDF5's default
// 1 MiB). Rows are only ever appended, so a finished chunk is never touched again; with the
// default cache (1 MiB per open dataset) the finished chunks of the small per-frame datasets
// (latencies, sequence numbers, shifts) stayed in memory until it was full: the process grew by
// ~30 bytes a frame for the first ~100,000 frames of a stream written to a result file.
// `dcpl` is the dataset's creation property list (its chunking), `element` the element size.
Handle append_access(std::int64_t dcpl, int rank, std::size_t element) {
  std::uint64_t chunk_bytes = element;
  std::vector<hsize_t> chunk(static_cast<std::size_t>(rank), 1);
  if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, chunk.data()) >= 0) {
    for (hsize_t c : chunk) chunk_bytes *= c;
  }
  Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), close_plist);
  const std::uint64_t bytes = std::min<std::uint64_t>(2 * chunk_bytes, std::uint64_t{1} << 20);
  H5Pset_chunk_cache(dapl.get(), 101, static_cast<std::size_t>(bytes), 1.0);
  return dapl;
}
}  // namespace

template <typename T>
Appendable<T>::Appendable(File& file, const std::string& path, const Dims& row_dims,
                          std::uint64_t chunk_rows)
    : file_(&file), path_(path), row_dims_(row_dims) {
  row_size_ = product(row_dims);
  if (chunk_rows == 0) chunk_rows = 1;
  if (file.exists(path)) {
    Dims d = file.dims(path);
    Dims tail(d.begin() + (d.empty() ? 0 : 1), d.end());
    if (d.empty() || tail != row_dims)
      throw std::runtime_error(file.where(path) +
                               ": exists with a different row shape; cannot append");
    // The existing dataset's own chunking sizes the cache. The probe is closed first: HDF5
    // shares one open dataset between handles, and its cache is set by the first open.
    Handle dcpl;
    {
      Handle probe = file.open_dataset(path);
      dcpl = Handle(H5Dget_create_plist(probe.get()), close_plist);
    }
    Handle dapl = append_access(dcpl.get(), static_cast<int>(d.size()), sizeof(T));
    dset_ = Handle(H5Dopen2(file.id(), normalize(path).c_str(), dapl.get()), close_dataset);
    if (!dset_.valid()) fail(file.where(path) + ": cannot open appendable dataset");
    rows_ = d[0];
    return;
  }
  Dims cur(1 + row_dims.size(), 0), max(1 + row_dims.size(), 0), chunk(1 + row_dims.size(), 0);
  max[0] = H5S_UNLIMITED;
  chunk[0] = chunk_rows;
  for (size_t i = 0; i < row_dims.size(); ++i) {
    cur[i + 1] = max[i + 1] = chunk[i + 1] = row_dims[i];
    if (chunk[i + 1] == 0) chunk[i + 1] = 1;
  }
  Handle space(H5Screate_simple(static_cast<int>(cur.size()),
                                reinterpret_cast<const hsize_t*>(cur.data()),
                                reinterpret_cast<const hsize_t*>(max.data())),
               close_space);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), close_plist);
  H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()),
               reinterpret_cast<const hsize_t*>(chunk.data()));
  Handle lcpl = lcpl_with_parents();
  std::string p = normalize(path);
  Handle dapl = append_access(dcpl.get(), static_cast<int>(chunk.size()), sizeof(T));
  dset_ = Handle(H5Dcreate2(file.id(), p.c_str(), detail::native_type<T>(), space.get(), lcpl.get(),
                            dcpl.get(), dapl.get()),
                 close_dataset);
  if (!dset_.valid()) fail(file.where(path) + ": cannot create appendable dataset");
}

template <typename T>
std::size_t Appendable<T>::chunk_cache_bytes() const {
  Handle dapl(H5Dget_access_plist(dset_.get()), close_plist);
  std::size_t slots = 0, bytes = 0;
  double w0 = 0;
  if (!dapl.valid() || H5Pget_chunk_cache(dapl.get(), &slots, &bytes, &w0) < 0)
    fail(file_->where(path_) + ": cannot read the chunk cache settings");
  return bytes;
}

template <typename T>
void Appendable<T>::append_rows(const T* rows, std::uint64_t n) {
  if (n == 0) return;
  Dims ext(1 + row_dims_.size());
  ext[0] = rows_ + n;
  for (size_t i = 0; i < row_dims_.size(); ++i) ext[i + 1] = row_dims_[i];
  if (H5Dset_extent(dset_.get(), reinterpret_cast<const hsize_t*>(ext.data())) < 0)
    fail(file_->where(path_) + ": cannot extend dataset");
  Handle file_space(H5Dget_space(dset_.get()), close_space);
  Dims start(ext.size(), 0), count = ext;
  start[0] = rows_;
  count[0] = n;
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET,
                      reinterpret_cast<const hsize_t*>(start.data()), nullptr,
                      reinterpret_cast<const hsize_t*>(count.data()), nullptr);
  Handle mem(H5Screate_simple(static_cast<int>(count.size()),
                              reinterpret_cast<const hsize_t*>(count.data()), nullptr),
             close_space);
  if (H5Dwrite(dset_.get(), detail::native_type<T>(), mem.get(), file_space.get(), H5P_DEFAULT,
               rows) < 0)
    fail(file_->where(path_) + ": cannot append rows");
  rows_ += n;
}

template class Appendable<float>;
template class Appendable<double>;
template class Appendable<std::int64_t>;
template class Appendable<std::int32_t>;
template class Appendable<std::uint16_t>;
template class Appendable<std::uint8_t>;

}  // namespace rtnmf::io::h5
