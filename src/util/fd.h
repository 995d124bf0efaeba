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
/// Reads a whole file. Errors name the path.
Result<std::string> ReadFile(const std::string& path);
/// Reads at most `max_bytes` + 1 bytes of a file: a caller that finds more than `max_bytes` knows
/// the file is too big without having read it whole. A file that never ends (a FIFO someone
/// keeps feeding, /dev/zero) or a huge sparse one costs `max_bytes` + 1 bytes, not all memory.
/// `regular_only` refuses anything but a regular file (after symlinks) without blocking: opening
/// or reading a FIFO or a terminal could wait forever. `*size`, if given, gets the file's size
/// from fstat (for regular files; otherwise -1).
Result<std::string> ReadFilePrefix(const std::string& path, size_t max_bytes,
                                   bool regular_only = false, long long* size = nullptr);
/// Writes a whole file with the given mode, replacing it. When the write fails (a full disk) a
/// file this call created is removed again: no empty or cut file is left behind.
Status WriteFile(const std::string& path, std::string_view data, int mode = 0600);
/// The same written whole as `path` + `temp_suffix` first and renamed into place: `path` is
/// the old file or the whole new one, never a cut one (a SIGKILL or a full disk half-way leaves
/// at most the temporary name, which the caller's sweep must know). The temporary file is
/// removed when anything fails.
Status WriteFileReplacing(const std::string& path, std::string_view data, int mode,
                          const std::string& temp_suffix);

/// Opens /dev/null on each of fds 0, 1 and 2 that the process was started without (`run … >&-`),
/// as Go's runtime does for every program since 1.22. Otherwise the first fd the program opens
/// (a signalfd, a job log) takes that number, and writes meant for stdout or stderr land in it.
/// An error (naming the fd) only when /dev/null cannot be opened.
Status OpenClosedStandardFds();

}  // namespace sr
