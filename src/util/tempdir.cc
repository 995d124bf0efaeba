#include "util/tempdir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>  // mkdtemp
#include <filesystem>
#include <utility>
#include <vector>

namespace sr {

Status RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return InternalError("removing " + path + ": " + ec.message());
  return Ok();
}

Status CheckPrivate(const std::string& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return ErrnoError("cache " + dir, errno);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return FailedError("cache " + dir + " is not a private directory of this user (" +
                       (S_ISDIR(st.st_mode) ? "" : "not a directory, ") + "owner uid " +
                       std::to_string(st.st_uid) + ", mode " + mode + ")");
  }
  return Ok();
}

Status MakePrivateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("creating cache " + dir, errno);
  return CheckPrivate(dir);
}

Result<TempDir> TempDir::Create(const std::string& prefix, const std::string& base) {
  std::string tmpl = (base.empty() ? std::string("/tmp") : base) + "/" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) return ErrnoError("mkdtemp " + tmpl, errno);
  return TempDir(std::string(buf.data()));
}

TempDir::TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& o) noexcept {
  if (this != &o) {
    Remove();
    path_ = std::exchange(o.path_, {});
  }
  return *this;
}

TempDir::~TempDir() { Remove(); }

void TempDir::Remove() {
  if (path_.empty()) return;
  (void)RemoveTree(path_);
  path_.clear();
}

}  // namespace sr
