#include "util/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sr {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  return ReadFilePrefix(path, std::string().max_size() - 1);
}

Result<std::string> ReadFilePrefix(const std::string& path, size_t max_bytes, bool regular_only,
                                   long long* size) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0)));
  if (!fd.valid()) return ErrnoError("open " + path, errno);
  struct stat st {};
  const bool regular = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode);
  if (regular_only && !regular) return FailedError("open " + path + ": not a regular file");
  if (size != nullptr) *size = regular ? static_cast<long long>(st.st_size) : -1;
  std::string out;
  char buf[65536];
  while (out.size() <= max_bytes) {
    const size_t want = std::min(sizeof buf, max_bytes + 1 - out.size());
    ssize_t n = ::read(fd.get(), buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read " + path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteFile(const std::string& path, std::string_view data, int mode) {
  // Created here, or replaced: only a file this call created is removed when the write fails
  // (a full disk must not leave an empty or cut file behind; a device or someone else's file
  // stays where it was).
  bool created = true;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid() && errno == EEXIST) {
    created = false;
    fd.Reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  }
  if (!fd.valid()) return ErrnoError("open " + path, errno);
  Status s = WriteAll(fd.get(), data);
  if (!s.ok()) {
    if (created) ::unlink(path.c_str());
    return s.error().Wrap(path);
  }
  return Ok();
}

Status WriteFileReplacing(const std::string& path, std::string_view data, int mode,
                          const std::string& temp_suffix) {
  const std::string temp = path + temp_suffix;
  Status written = WriteFile(temp, data, mode);
  // WriteFile's mode goes through the umask; an executable's must not.
  if (written.ok() && ::chmod(temp.c_str(), static_cast<mode_t>(mode)) != 0) written = ErrnoError("chmod " + temp, errno);
  if (written.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    written = ErrnoError("rename " + temp + " to " + path, errno);
  }
  if (!written.ok()) ::unlink(temp.c_str());
  return written;
}

Status OpenClosedStandardFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    // The lowest free number is `fd` itself: every lower one is open by now.
    const int opened = ::open("/dev/null", O_RDWR);
    if (opened != fd) {
      const std::string why = opened < 0 ? std::strerror(errno) : "got fd " + std::to_string(opened);
      if (opened >= 0) ::close(opened);
      return InternalError("fd " + std::to_string(fd) + " is closed and /dev/null cannot take its place: " + why);
    }
  }
  return Ok();
}

}  // namespace sr
