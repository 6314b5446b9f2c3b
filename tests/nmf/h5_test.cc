// Round trips and error messages of the HDF5 wrapper (engine/io/h5.h).
#include "engine/io/h5.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>

namespace rtnmf::io::h5 {
namespace {

// A unique scratch file per test, removed at the end.
class H5File : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (std::filesystem::temp_directory_path() /
             (std::string("rtnmf_h5_") + info->name() + "_" + std::to_string(::getpid()) + ".h5"))
                .string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::string path_;
};

TEST_F(H5File, RoundTripsEveryElementTypeWithDims) {
  {
    File f = File::create(path_);
    std::vector<float> a(2 * 3 * 4);
    std::iota(a.begin(), a.end(), 0.5f);
    f.write<float>("/g/sub/a", a, {2, 3, 4});
    f.write<double>("d", std::vector<double>{1.25, -2.5}, {2});
    f.write<std::int64_t>("/i64", std::vector<std::int64_t>{-(1LL << 40), 7}, {1, 2});
    f.write<std::int32_t>("/i32", std::vector<std::int32_t>{-3, 4, 5}, {3});
    f.write<std::uint16_t>("/u16", std::vector<std::uint16_t>{65535, 1}, {2});
    f.write<std::uint8_t>("/u8", std::vector<std::uint8_t>{255, 0, 9}, {3});
  }
  File f = File::open(path_);
  Dims d;
  std::vector<float> a = f.read<float>("/g/sub/a", &d);
  EXPECT_EQ(d, (Dims{2, 3, 4}));
  EXPECT_FLOAT_EQ(a[23], 23.5f);
  EXPECT_EQ(f.read<double>("/d"), (std::vector<double>{1.25, -2.5}));
  EXPECT_EQ(f.read<std::int64_t>("/i64"), (std::vector<std::int64_t>{-(1LL << 40), 7}));
  EXPECT_EQ(f.read<std::int32_t>("/i32"), (std::vector<std::int32_t>{-3, 4, 5}));
  EXPECT_EQ(f.read<std::uint16_t>("/u16"), (std::vector<std::uint16_t>{65535, 1}));
  EXPECT_EQ(f.read<std::uint8_t>("/u8"), (std::vector<std::uint8_t>{255, 0, 9}));
  // Conversion on read: a uint16 movie read as float.
  EXPECT_EQ(f.read<float>("/u16"), (std::vector<float>{65535.f, 1.f}));
  EXPECT_TRUE(f.exists("/g/sub"));
  EXPECT_TRUE(f.is_dataset("/g/sub/a"));
  EXPECT_FALSE(f.is_dataset("/g/sub"));
  EXPECT_FALSE(f.exists("/g/nope/a"));
  EXPECT_EQ(f.list("/g"), (std::vector<std::string>{"sub"}));
}

TEST_F(H5File, StoresEigenMatricesAsRowsByColumns) {
  Eigen::MatrixXf m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  {
    File f = File::create(path_);
    f.write_matrix("/W", m);
  }
  File f = File::open(path_);
  EXPECT_EQ(f.dims("/W"), (Dims{2, 3}));
  // Row-major on disk, as NumPy would see it.
  EXPECT_EQ(f.read<float>("/W"), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  Eigen::MatrixXf back = f.read_matrix<float>("/W");
  EXPECT_EQ(back, m);
}

TEST_F(H5File, AttributesRoundTripOnFileGroupAndDataset) {
  {
    File f = File::create(path_);
    f.create_group("/params/inner");
    f.write<float>("/x", std::vector<float>{1}, {1});
    f.set_attr("/", "tool", "rtnmf fit");
    f.set_attr("/params/inner", "tol", 1e-4);
    f.set_attr("/x", "seed", std::int64_t{42});
    f.set_attr("/x", "seed", std::int64_t{43});  // replaces
  }
  File f = File::open(path_);
  EXPECT_EQ(f.attr_string("/", "tool"), "rtnmf fit");
  EXPECT_DOUBLE_EQ(f.attr_double("/params/inner", "tol"), 1e-4);
  EXPECT_EQ(f.attr_int64("/x", "seed"), 43);
  EXPECT_TRUE(f.has_attr("/x", "seed"));
  EXPECT_FALSE(f.has_attr("/x", "nope"));
  try {
    f.attr_double("/x", "nope");
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "h5: " + path_ + ":/x: no attribute 'nope'");
  }
  EXPECT_THROW(f.attr_int64("/", "tool"), std::runtime_error);
}

TEST_F(H5File, ReadsOneFrameAtATimeInEitherAxisOrder) {
  const std::uint64_t T = 5, H = 3, W = 4;
  std::vector<std::uint16_t> thw(T * H * W), hwt(T * H * W);
  for (std::uint64_t t = 0; t < T; ++t)
    for (std::uint64_t y = 0; y < H; ++y)
      for (std::uint64_t x = 0; x < W; ++x) {
        auto v = static_cast<std::uint16_t>(100 * t + 10 * y + x);
        thw[(t * H + y) * W + x] = v;
        hwt[(y * W + x) * T + t] = v;
      }
  File f = File::create(path_);
  f.write<std::uint16_t>("/movie", thw, {T, H, W});
  f.write<std::uint16_t>("/movie_hwt", hwt, {H, W, T});
  std::vector<float> frame(H * W), frame2(H * W);
  f.read_rows<float>("/movie", 3, 1, frame.data());
  f.read_slab<float>("/movie_hwt", {0, 0, 3}, {H, W, 1}, frame2.data());
  EXPECT_EQ(frame, frame2);
  EXPECT_FLOAT_EQ(frame[1 * W + 2], 312.f);
  try {
    f.read_rows<float>("/movie", 5, 1, frame.data());
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(":/movie: hyperslab [5, 6) out of range 5"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(H5File, AppendableStreamsRowsAndReopensAtTheEnd) {
  {
    File f = File::create(path_);
    Appendable<float> act(f, "/out/act", {3}, 2);
    for (int t = 0; t < 5; ++t) {
      float row[3] = {float(t), float(t) + 0.5f, -float(t)};
      act.append_row(row);
    }
    Appendable<std::int64_t> seq(f, "/out/seq", {});
    std::int64_t block[4] = {10, 11, 12, 13};
    seq.append_rows(block, 4);
    EXPECT_EQ(act.rows(), 5u);
  }
  {
    File f = File::open(path_, File::Mode::kReadWrite);
    Appendable<float> act(f, "/out/act", {3});
    EXPECT_EQ(act.rows(), 5u);
    float row[3] = {9, 9, 9};
    act.append_row(row);
    EXPECT_THROW(Appendable<float>(f, "/out/act", {4}), std::runtime_error);
  }
  File f = File::open(path_);
  EXPECT_EQ(f.dims("/out/act"), (Dims{6, 3}));
  std::vector<float> a = f.read<float>("/out/act");
  EXPECT_FLOAT_EQ(a[3 * 4 + 1], 4.5f);
  EXPECT_FLOAT_EQ(a[3 * 5 + 2], 9.f);
  EXPECT_EQ(f.read<std::int64_t>("/out/seq"), (std::vector<std::int64_t>{10, 11, 12, 13}));
}

// Appended datasets keep two chunks cached (never more than HDF5's default 1 MiB): a finished
// chunk is not read again, and the default cache kept up to 1 MiB of finished chunks per
// dataset, growing with the stream.
TEST_F(H5File, AppendableCachesTwoChunks) {
  {
    File f = File::create(path_);
    Appendable<float> act(f, "/out/act", {3}, 2);
    EXPECT_EQ(act.chunk_cache_bytes(), 2u * 2 * 3 * sizeof(float));
    Appendable<std::int64_t> seq(f, "/out/seq", {});
    EXPECT_EQ(seq.chunk_cache_bytes(), 2u * 256 * sizeof(std::int64_t));
    Appendable<float> wide(f, "/out/wide", {1000}, 256);
    EXPECT_EQ(wide.chunk_cache_bytes(), std::size_t{1} << 20);
    float row[3] = {1, 2, 3};
    act.append_row(row);
  }
  File f = File::open(path_, File::Mode::kReadWrite);
  Appendable<float> act(f, "/out/act", {3});  // reopened: sized by the file's own chunks
  EXPECT_EQ(act.chunk_cache_bytes(), 2u * 2 * 3 * sizeof(float));
  EXPECT_EQ(act.rows(), 1u);
}

// The result file keeps the final components' rows and moves the others to a group of their own:
// rows split exactly, in the order asked, across several column blocks, chunked or contiguous.
TEST_F(H5File, SplitRowsKeepsSomeInPlaceAndMovesTheOthers) {
  const std::uint64_t K = 5, T = 4500;  // more than two 2048-column blocks
  auto value = [](std::uint64_t k, std::uint64_t t) { return static_cast<float>(k * 10000 + t); };
  std::vector<float> m(K * T);
  for (std::uint64_t k = 0; k < K; ++k)
    for (std::uint64_t t = 0; t < T; ++t) m[k * T + t] = value(k, t);
  {
    File f = File::create(path_);
    Appendable<float> chunked(f, "/chunked", {T}, 2);
    chunked.append_rows(m.data(), K);
    f.write<float>("/contiguous", m, {K, T});
  }
  const std::vector<std::uint64_t> keep{0, 2, 4}, moved{3, 1};
  for (const char* name : {"/chunked", "/contiguous"}) {
    {
      File f = File::open(path_, File::Mode::kReadWrite);
      f.split_rows(name, keep, std::string("/retired") + name, moved);
    }
    File f = File::open(path_);
    EXPECT_EQ(f.dims(name), (Dims{3, T})) << name;
    EXPECT_EQ(f.dims(std::string("/retired") + name), (Dims{2, T})) << name;
    const std::vector<float> a = f.read<float>(name), b = f.read<float>(std::string("/retired") + name);
    for (std::uint64_t t = 0; t < T; ++t) {
      for (std::size_t i = 0; i < keep.size(); ++i) ASSERT_EQ(a[i * T + t], value(keep[i], t)) << name << " t " << t;
      for (std::size_t i = 0; i < moved.size(); ++i) ASSERT_EQ(b[i * T + t], value(moved[i], t)) << name << " t " << t;
    }
  }
  // Nothing to move: the dataset only shrinks, and no moved dataset appears.
  {
    File f = File::open(path_, File::Mode::kReadWrite);
    f.split_rows("/chunked", {1}, "/none", {});
    EXPECT_FALSE(f.exists("/none"));
    EXPECT_EQ(f.dims("/chunked"), (Dims{1, T}));
    EXPECT_EQ(f.read<float>("/chunked")[T - 1], value(2, T - 1));
    try {
      f.split_rows("/chunked", {0}, "/x", {1});
      FAIL();
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "h5: " + path_ + ":/chunked: row 1 requested but the dataset has 1");
    }
  }
}

TEST_F(H5File, ErrorsNameTheFileAndThePath) {
  try {
    File::open(path_ + ".missing");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "h5: cannot open '" + path_ + ".missing': no such file or not readable");
  }
  {
    std::ofstream(path_) << "not hdf5";
  }
  try {
    File::open(path_);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "h5: '" + path_ + "' is not an HDF5 file");
  }
  File f = File::create(path_);
  try {
    f.dims("/a/b");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "h5: " + path_ + ":/a/b: no such dataset");
  }
  EXPECT_THROW(File::create("/nonexistent_dir_rtnmf/x.h5"), std::runtime_error);
}

}  // namespace
}  // namespace rtnmf::io::h5
