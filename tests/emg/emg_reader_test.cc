// Multichannel file readers: CSV, raw interleaved, EDF/BDF. Good files round-trip; each bad-input
// case is reported with its exact text (file:line or block index), and the reader goes on.
#include <edflib.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/io/csv_stream.h"
#include "engine/io/edf_reader.h"
#include "engine/io/interleaved.h"
#include "tests/support/scratch.h"

namespace rtnmf::io {
namespace {

std::string temp_path(const std::string& name) {
  return rtnmf::test::scratch_path(name);
}

std::string write_text(const std::string& name, const std::string& text) {
  const std::string p = temp_path(name);
  std::ofstream(p) << text;
  return p;
}

TEST(CsvStream, ReadsChannelsAndInfersTheRateFromTheTimeColumn) {
  std::string text = "time,EMG1,EMG2\n";
  for (int i = 0; i < 10; ++i) {
    text += std::to_string(i * 0.0005) + "," + std::to_string(i) + "," + std::to_string(-i) + "\n";
  }
  const std::string p = write_text("ok.csv", text);
  CsvStreamReader r;
  r.open(p, {});
  EXPECT_EQ(r.channels(), 2);
  EXPECT_NEAR(r.sample_rate_hz(), 2000.0, 1e-6);
  EXPECT_EQ(r.channel_names(), (std::vector<std::string>{"EMG1", "EMG2"}));
  std::vector<float> out(2 * 4);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  EXPECT_EQ(out[6], 3.0f);
  EXPECT_EQ(out[7], -3.0f);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  ASSERT_EQ(r.read(out.data(), 4), 2);
  EXPECT_EQ(out[2], 9.0f);
  ASSERT_EQ(r.read(out.data(), 4), 0);
}

TEST(CsvStream, SelectsColumnsByNameAndUsesAGivenRate) {
  const std::string p = write_text("sel.csv", "a;b;c\n1;2;3\n4;5;6\n");
  CsvStreamReader r;
  CsvStreamOptions o;
  o.select = {"c", "a"};
  o.sample_rate_hz = 1000;
  r.open(p, o);
  std::vector<float> out(4);
  ASSERT_EQ(r.read(out.data(), 2), 2);
  EXPECT_EQ(out, (std::vector<float>{3, 1, 6, 4}));
  o.select = {"d"};
  try {
    r.open(p, o);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), p + ":1: no column 'd' (columns: a, b, c)");
  }
}

TEST(CsvStream, WithoutTimeColumnOrRateItRefusesToOpen) {
  const std::string p = write_text("norate.csv", "a,b\n1,2\n");
  CsvStreamReader r;
  try {
    r.open(p, {});
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              p + ": no time column (t, time, time_s) and no sample rate; set "
                  "source.sample_rate");
  }
}

// Each bad row rejects its block with file:line and the column; the next block is read.
struct BadRowCase {
  const char* row;
  const char* message;  // after "<file>:5: "
};

TEST(CsvStream, BadRowsRejectTheirBlockWithFileLineAndColumn) {
  const BadRowCase cases[] = {
      {"0.0015,1", "expected 3 cells (as in the header), found 2"},
      {"0.0015,1,2,3", "expected 3 cells (as in the header), found 4"},
      {"0.0015,abc,2", "column 'EMG1': 'abc' is not a number"},
      {"0.0015,1,2x", "column 'EMG2': '2x' is not a number"},
      {"0.0015,,2", "column 'EMG1': empty cell"},
      {"0.0015,NaN,2", "column 'EMG1': not a finite number ('NaN')"},
      {"0.0015,1,inf", "column 'EMG2': not a finite number ('inf')"},
  };
  for (const BadRowCase& c : cases) {
    // Lines: 1 header, 2..4 rows 0..2, 5 the bad row, 6..9 good rows.
    std::string text = "t,EMG1,EMG2\n0,0,0\n0.0005,1,1\n0.001,2,2\n";
    text += std::string(c.row) + "\n";
    for (int i = 4; i < 8; ++i) text += std::to_string(i * 0.0005) + ",7,7\n";
    const std::string p = write_text("bad.csv", text);
    CsvStreamReader r;
    r.open(p, {});
    EXPECT_NEAR(r.sample_rate_hz(), 2000.0, 1e-6) << c.row;
    std::vector<float> out(2 * 4);
    ASSERT_EQ(r.read(out.data(), 2), 2) << c.row;
    ASSERT_EQ(r.read(out.data(), 2), -1) << c.row;  // rows 2 and 3 (the bad one)
    EXPECT_EQ(r.error(), p + ":5: " + c.message);
    ASSERT_EQ(r.read(out.data(), 4), 4) << c.row;  // the stream goes on
    EXPECT_EQ(out[7], 7.0f);
    ASSERT_EQ(r.read(out.data(), 4), 0);
  }
}

TEST(CsvStream, ABadFirstRowIsReportedWhenTheRateCannotBeInferred) {
  const std::string p = write_text("badfirst.csv", "t,a\n0,x\n0.001,1\n");
  CsvStreamReader r;
  try {
    r.open(p, {});
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), p + ":2: column 'a': 'x' is not a number");
  }
}

TEST(CsvStream, BadRowsFarFromTheStartAreReportedWithTheirLine) {
  std::string text = "t,x\n";
  for (int i = 0; i < 2500; ++i) text += std::to_string(i) + (i == 2200 ? ",oops\n" : ",1\n");
  const std::string p = write_text("far.csv", text);
  CsvStreamReader r;
  CsvStreamOptions o;
  r.open(p, o);
  EXPECT_NEAR(r.sample_rate_hz(), 1.0, 1e-9);
  std::vector<float> out(100);
  int rejected = 0;
  std::int64_t n;
  while ((n = r.read(out.data(), 100)) != 0) {
    if (n < 0) {
      ++rejected;
      EXPECT_EQ(r.error(), p + ":2202: column 'x': 'oops' is not a number");
    }
  }
  EXPECT_EQ(rejected, 1);
}

template <typename T>
std::string write_binary(const std::string& name, const std::vector<T>& v, std::size_t extra = 0) {
  const std::string p = temp_path(name);
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  for (std::size_t i = 0; i < extra; ++i) f.put('\0');
  return p;
}

TEST(InterleavedReader, ReadsInt16SampleMajorWithScale) {
  std::vector<std::int16_t> v;
  for (int s = 0; s < 10; ++s)
    for (int c = 0; c < 3; ++c) v.push_back(static_cast<std::int16_t>(100 * c + s));
  const std::string p = write_binary("i16.bin", v);
  InterleavedReader r;
  InterleavedOptions o;
  o.channels = 3;
  o.sample_rate_hz = 1000;
  o.scale = 0.5;
  r.open(p, o);
  EXPECT_EQ(r.total_samples(), 10u);
  std::vector<float> out(3 * 4);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  EXPECT_EQ(out[3 * 2 + 1], 0.5f * 102);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  ASSERT_EQ(r.read(out.data(), 4), 2);
  EXPECT_EQ(out[3 * 1 + 2], 0.5f * 209);
  ASSERT_EQ(r.read(out.data(), 4), 0);
}

TEST(InterleavedReader, BigEndianInt32) {
  std::vector<unsigned char> bytes = {0x00, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFE};
  const std::string p = write_binary("be.bin", bytes);
  InterleavedReader r;
  InterleavedOptions o;
  o.channels = 2;
  o.sample_rate_hz = 10;
  o.type = InterleavedOptions::Type::kInt32;
  o.big_endian = true;
  r.open(p, o);
  std::vector<float> out(2);
  ASSERT_EQ(r.read(out.data(), 1), 1);
  EXPECT_EQ(out[0], 65536.0f);
  EXPECT_EQ(out[1], -2.0f);
}

TEST(InterleavedReader, NanInAFloatBlockRejectsThatBlockWithItsIndex) {
  std::vector<float> v(4 * 12, 1.0f);
  v[4 * 9 + 2] = std::nanf("");  // sample 9, channel 2: block 2 of 4-sample blocks
  v[4 * 11 + 0] = INFINITY;
  const std::string p = write_binary("nan.bin", v);
  InterleavedReader r;
  InterleavedOptions o;
  o.channels = 4;
  o.sample_rate_hz = 2000;
  o.type = InterleavedOptions::Type::kFloat32;
  r.open(p, o);
  std::vector<float> out(4 * 8);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  ASSERT_EQ(r.read(out.data(), 4), -1);
  EXPECT_EQ(r.error(), p + ": block 2: channel 2: NaN at sample 9");
  ASSERT_EQ(r.read(out.data(), 4), 0);
  r.open(p, o);
  ASSERT_EQ(r.read(out.data(), 8), 8);
  ASSERT_EQ(r.read(out.data(), 8), -1);
  EXPECT_EQ(r.error(), p + ": block 1: channel 2: NaN at sample 9");
}

TEST(InterleavedReader, TruncatedFileDeliversWholeSamplesThenReportsTheTail) {
  std::vector<std::int16_t> v(2 * 5, 3);
  const std::string p = write_binary("trunc.bin", v, 3);
  InterleavedReader r;
  InterleavedOptions o;
  o.channels = 2;
  o.sample_rate_hz = 100;
  r.open(p, o);
  std::vector<float> out(2 * 4);
  ASSERT_EQ(r.read(out.data(), 4), 4);
  ASSERT_EQ(r.read(out.data(), 4), 1);
  ASSERT_EQ(r.read(out.data(), 4), -1);
  EXPECT_EQ(r.error(), p + ": block 2: truncated file: 3 trailing bytes after sample 5 (one sample "
                           "of 2 int16 channels is 4 bytes)");
  ASSERT_EQ(r.read(out.data(), 4), 0);
}

TEST(InterleavedReader, MissingRateOrChannelsIsAnOpenError) {
  const std::string p = write_binary("x.bin", std::vector<std::int16_t>(4));
  InterleavedReader r;
  InterleavedOptions o;
  o.channels = 2;
  try {
    r.open(p, o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), p + ": sample rate must be positive (set source.sample_rate)");
  }
  o.sample_rate_hz = 1;
  o.channels = 0;
  EXPECT_THROW(r.open(p, o), std::runtime_error);
  o.channels = 2;
  o.header_bytes = 100;
  try {
    r.open(p, o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              p + ": file of 8 bytes is shorter than its header of 100 bytes");
  }
}

// Writes an EDF+/BDF+ file with edflib: `labels.size()` signals at the given rates (one-second
// records), values v(signal, sample) = 10 * signal + sample / 100.
std::string write_edf(const std::string& name, int filetype, const std::vector<std::string>& labels,
                      const std::vector<int>& rates, int seconds) {
  const std::string p = temp_path(name);
  const int ns = static_cast<int>(labels.size());
  const int h = edfopen_file_writeonly(p.c_str(), filetype, ns);
  EXPECT_GE(h, 0);
  for (int s = 0; s < ns; ++s) {
    edf_set_samplefrequency(h, s, rates[s]);
    edf_set_physical_maximum(h, s, 1000.0);
    edf_set_physical_minimum(h, s, -1000.0);
    const bool bdf = filetype == EDFLIB_FILETYPE_BDFPLUS;
    edf_set_digital_maximum(h, s, bdf ? 8388607 : 32767);
    edf_set_digital_minimum(h, s, bdf ? -8388608 : -32768);
    edf_set_label(h, s, labels[s].c_str());
    edf_set_physical_dimension(h, s, "uV");
  }
  for (int sec = 0; sec < seconds; ++sec) {
    for (int s = 0; s < ns; ++s) {
      std::vector<double> buf(rates[s]);
      for (int i = 0; i < rates[s]; ++i) buf[i] = 10.0 * s + (sec * rates[s] + i) / 100.0;
      EXPECT_EQ(edfwrite_physical_samples(h, buf.data()), 0);
    }
  }
  edfclose_file(h);
  return p;
}

TEST(EdfReader, ReadsEdfPlusAndBdfPlusPhysicalValues) {
  for (int type : {EDFLIB_FILETYPE_EDFPLUS, EDFLIB_FILETYPE_BDFPLUS}) {
    const std::string p = write_edf(type == EDFLIB_FILETYPE_BDFPLUS ? "a.bdf" : "a.edf", type,
                                    {"EMG1", "EMG2", "EMG3"}, {500, 500, 500}, 3);
    EdfReader r;
    r.open(p);
    EXPECT_EQ(r.file_type(), type == EDFLIB_FILETYPE_BDFPLUS ? "BDF+" : "EDF+");
    EXPECT_EQ(r.channels(), 3);
    EXPECT_DOUBLE_EQ(r.sample_rate_hz(), 500.0);
    EXPECT_EQ(r.total_samples(), 1500);
    EXPECT_EQ(r.channel_names(), (std::vector<std::string>{"EMG1", "EMG2", "EMG3"}));
    std::vector<float> out(3 * 700);
    std::int64_t total = 0, n;
    double max_err = 0;
    while ((n = r.read(out.data(), 700)) > 0) {
      for (std::int64_t t = 0; t < n; ++t)
        for (int c = 0; c < 3; ++c)
          max_err = std::max(max_err, std::abs(out[t * 3 + c] - (10.0 * c + (total + t) / 100.0)));
      total += n;
    }
    EXPECT_EQ(total, 1500);
    // EDF quantises 2000 uV over 16 bits (0.03 uV), BDF over 24 bits.
    EXPECT_LT(max_err, type == EDFLIB_FILETYPE_BDFPLUS ? 1e-3 : 0.04);
  }
}

TEST(EdfReader, SelectionMissingSignalsAndMixedRatesAreClearErrors) {
  const std::string p = write_edf("mixed.edf", EDFLIB_FILETYPE_EDFPLUS, {"EMG1", "ACC", "EMG2"},
                                  {1000, 100, 1000}, 2);
  EdfReader r;
  try {
    r.open(p);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              p + ": signals have different sample rates ('EMG1' 1000 Hz, 'ACC' 100 Hz); select "
                  "signals of one rate with source.select");
  }
  EdfOptions o;
  o.select = {"EMG2", "EMG1"};
  r.open(p, o);
  EXPECT_EQ(r.channels(), 2);
  std::vector<float> out(2);
  ASSERT_EQ(r.read(out.data(), 1), 1);
  EXPECT_NEAR(out[0], 20.0, 0.05);
  EXPECT_NEAR(out[1], 0.0, 0.05);
  o.select = {"EMG9"};
  try {
    r.open(p, o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), p + ": no signal 'EMG9' (signals: EMG1, ACC, EMG2)");
  }
}

TEST(EdfReader, MissingAndCorruptFilesAreClearErrors) {
  EdfReader r;
  const std::string missing = temp_path("missing.edf");
  try {
    r.open(missing);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": no such file");
  }
  const std::string junk = write_text("junk.edf", std::string(300, 'x'));
  try {
    r.open(junk);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              junk + ": not a valid EDF/BDF file (format errors in the header)");
  }
}

}  // namespace
}  // namespace rtnmf::io
