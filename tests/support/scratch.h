// Scratch files of a test process: one directory per process in the test temp directory,
// removed with everything in it when the process exits normally. Tests name files in it and need
// not remove them (a test that fails half-way used to leave its files behind, and some tests
// never removed theirs: thousands of files in /tmp after a few CI runs).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

namespace rtnmf::test {

inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path;
    Dir() : path(std::filesystem::path(::testing::TempDir()) / ("rtnmf_test_" + std::to_string(::getpid()))) {
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

// A file name in the process's scratch directory.
inline std::string scratch_path(const std::string& name) { return (scratch_dir() / name).string(); }

}  // namespace rtnmf::test
