// RAII for file descriptors, and the few fd helpers every stage needs.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "util/result.h"

namespace sr {

/// Owns one file descriptor; closes it on destruction. -1 means "none".
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

/// Writes all of `data`, retrying on EINTR and short writes.
Status WriteAll(int fd, std::string_view data);
/// Reads a whole file (for step files, output files). Errors name the path.
Result<std::string> ReadFile(const std::string& path);
/// Writes a whole file with the given mode, replacing it.
Status WriteFile(const std::string& path, std::string_view data, int mode = 0600);

}  // namespace sr
