// Matrix readers for the tools: formats, orientation as stored, and exact error messages.
#include "engine/io/matrix_io.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/io/h5.h"

namespace rtnmf::io {
namespace {

class MatrixIo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("rtnmf_matrix_io_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  // A .npy file with the given header dict and raw payload.
  std::string npy(const std::string& name, int version, const std::string& dict,
                  const void* data, size_t bytes) {
    std::string header = dict;
    const size_t prefix = version == 1 ? 10 : 12;
    header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
    header += '\n';
    std::string out = std::string("\x93NUMPY", 6);
    out += static_cast<char>(version);
    out += '\0';
    const size_t len = header.size();
    out += static_cast<char>(len & 0xff);
    out += static_cast<char>((len >> 8) & 0xff);
    if (version != 1) out += std::string(2, '\0');
    out += header;
    out.append(static_cast<const char*>(data), bytes);
    return write(name, out);
  }
  std::string error_of(const std::string& spec) {
    try {
      read_matrix(spec);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no error)";
  }
  std::filesystem::path dir_;
};

TEST_F(MatrixIo, ReadsCsvWithAndWithoutAHeaderRow) {
  LoadedMatrix a = read_matrix(write("a.csv", "m1,m2,m3\n1,2,3\n4,5.5,6e-1\n\n"));
  EXPECT_EQ(a.column_names, (std::vector<std::string>{"m1", "m2", "m3"}));
  ASSERT_EQ(a.values.rows(), 2);
  ASSERT_EQ(a.values.cols(), 3);
  EXPECT_FLOAT_EQ(a.values(1, 1), 5.5f);
  EXPECT_FLOAT_EQ(a.values(1, 2), 0.6f);
  LoadedMatrix b = read_matrix(write("b.tsv", "1\t2\r\n3\t4\r\n"));
  EXPECT_TRUE(b.column_names.empty());
  EXPECT_EQ(b.values, (Eigen::MatrixXf(2, 2) << 1, 2, 3, 4).finished());
}

TEST_F(MatrixIo, CsvErrorsNameTheLineAndColumn) {
  std::string p = write("bad.csv", "a,b,c\n1,2,3\n4,x5,6\n");
  EXPECT_EQ(error_of(p), p + ": line 3, column 2: 'x5' is not a number");
  p = write("ragged.csv", "1,2,3\n4,5\n");
  EXPECT_EQ(error_of(p), p + ": line 2 has 2 fields, expected 3 (ragged row)");
  p = write("empty.csv", "a,b\n\n");
  EXPECT_EQ(error_of(p), p + ": no data (empty matrix)");
  p = write("neg.csv", "a,b\n1,2\n3,-1.5\n");
  EXPECT_EQ(error_of(p), p + ": negative value -1.5 at row 2, column 2 (1-based)");
  p = write("nan.csv", "1,2\n3,4\n5,nan\n");
  EXPECT_EQ(error_of(p), p + ": NaN at row 3, column 2 (1-based)");
  p = write("inf.csv", "inf,2\n");
  EXPECT_EQ(error_of(p), p + ": infinite value at row 1, column 1 (1-based)");
  p = write("blankcell.csv", "1,,3\n");
  EXPECT_EQ(error_of(p), p + ": line 1, column 2: '' is not a number");
  EXPECT_EQ(error_of((dir_ / "missing.csv").string()),
            (dir_ / "missing.csv").string() + ": cannot open for reading");
  EXPECT_EQ(error_of("data.xyz"),
            "data.xyz: unknown input format (expected .csv, .tsv, .npy or FILE.h5:/dataset)");
}

TEST_F(MatrixIo, ReadsNpyInEveryOrderAndCommonDtype) {
  // 2 × 3 matrix [[1,2,3],[4,5,6]].
  const double c_order[] = {1, 2, 3, 4, 5, 6};
  const double f_order[] = {1, 4, 2, 5, 3, 6};
  Eigen::MatrixXf expect(2, 3);
  expect << 1, 2, 3, 4, 5, 6;
  std::string p = npy("c.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                      c_order, sizeof(c_order));
  EXPECT_EQ(read_matrix(p).values, expect);
  p = npy("f.npy", 2, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", f_order,
          sizeof(f_order));
  EXPECT_EQ(read_matrix(p).values, expect);
  const std::int32_t ints[] = {1, 2, 3, 4, 5, 6};
  p = npy("i.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", ints,
          sizeof(ints));
  EXPECT_EQ(read_matrix(p).values, expect);
  const std::uint16_t u16[] = {7, 8, 9};
  p = npy("v.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", u16,
          sizeof(u16));
  EXPECT_EQ(read_matrix(p).values, (Eigen::MatrixXf(3, 1) << 7, 8, 9).finished());
  const float neg[] = {1, -2};
  p = npy("n.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", neg,
          sizeof(neg));
  EXPECT_EQ(error_of(p), p + ": negative value -2 at row 1, column 2 (1-based)");
  p = npy("big.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2), }", neg,
          sizeof(neg));
  EXPECT_EQ(error_of(p), p + ": big-endian dtype '>f4' is not supported");
  p = npy("short.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", neg,
          sizeof(neg));
  EXPECT_EQ(error_of(p), p + ": file shorter than its header says (4x2 of <f4)");
}

TEST_F(MatrixIo, WriteNpyRoundTrips) {
  Eigen::MatrixXf m(3, 2);
  m << 1, 2, 3, 4, 5, 6;
  const std::string p = (dir_ / "m.npy").string();
  write_npy(p, m);
  EXPECT_EQ(read_npy(p).values, m);
}

TEST_F(MatrixIo, ReadsAnHdf5DatasetBySpec) {
  const std::string p = (dir_ / "d.h5").string();
  {
    h5::File f = h5::File::create(p);
    Eigen::MatrixXf m(2, 2);
    m << 1, 2, 3, -4;
    f.write_matrix("/group/x", m);
  }
  EXPECT_EQ(error_of(p + ":/group/x"), p + ":/group/x: negative value -4 at row 2, column 2 (1-based)");
  LoadedMatrix m = read_matrix(p + ":/group/x", false);
  EXPECT_FLOAT_EQ(m.values(1, 0), 3.f);
  EXPECT_EQ(error_of(p), p + ": name the dataset too, as FILE.h5:/path/to/dataset");
  EXPECT_EQ(error_of(p + ":/nope"), "h5: " + p + ":/nope: no such dataset");
}

}  // namespace
}  // namespace rtnmf::io
