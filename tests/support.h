// Shared test helpers: temp dirs and exception-message assertions.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace seqrec::testing {

/// A fresh temporary directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "seqrec_test_XXXXXX").string();
    char* made = mkdtemp(tmpl.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Writes `content` to <dir>/<name> and returns the full path.
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream out(file(name), std::ios::binary);
    out << content;
    return file(name);
  }

 private:
  std::string path_;
};

}  // namespace seqrec::testing

/// Asserts that `stmt` throws an exception derived from std::exception whose what() contains `sub`.
#define ASSERT_THROWS_WITH(stmt, sub)                                                  \
  do {                                                                                 \
    try {                                                                              \
      stmt;                                                                            \
      FAIL() << "expected an exception containing '" << (sub) << "'";                 \
    } catch (const std::exception& e) {                                                \
      ASSERT_NE(std::string(e.what()).find(sub), std::string::npos)                   \
          << "message was: " << e.what();                                              \
    }                                                                                  \
  } while (0)
