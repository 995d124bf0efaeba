#include "util/tempdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>  // NAME_MAX, PATH_MAX
#include <cstdio>
#include <cstdlib>  // mkdtemp
#include <filesystem>
#include <utility>
#include <vector>

#include "util/owner.h"

namespace sr {

namespace {

// The names in directory `dir` (not "." and ".."), read whole and the directory closed again:
// the walk below holds one fd at a time, however deep the tree.
Status ListDir(const std::string& dir, std::vector<std::string>* names) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError("removing " + dir + ": open", errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("removing " + dir + ": fdopendir", err);
  }
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names->push_back(std::move(name));
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError("removing " + dir + ": readdir", err);
  return Ok();
}

// Removes what `dir` holds, by path, one open directory at a time: std::filesystem::remove_all
// holds an fd per level, and a runner whose fd table is full (the very case that ends jobs with
// `pipe2: Too many open files`) could not remove a job dir two levels deep. `skip` stays (the
// owner mark of the top directory: see RemoveTree). Keeps going past an error, returns the first.
Status RemoveContents(const std::string& dir, const char* skip) {
  std::vector<std::string> names;
  SR_RETURN_IF_ERROR(ListDir(dir, &names));
  Status first = Ok();
  for (const std::string& name : names) {
    if (skip != nullptr && name == skip) continue;
    const std::string child = dir + "/" + name;
    if (::unlink(child.c_str()) == 0 || errno == ENOENT) continue;
    int err = errno;
    struct stat st {};
    if ((err == EISDIR || err == EPERM) && ::lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      Status inner = Ok();
      if (child.size() + NAME_MAX + 2 <= PATH_MAX) {
        inner = RemoveContents(child, nullptr);
      } else {
        // Too deep to name its entries by path: only a walk relative to open directories
        // (an fd per level) reaches them.
        std::error_code ec;
        std::filesystem::remove_all(child, ec);
        inner = ec ? InternalError("removing " + child + ": " + ec.message()) : Ok();
      }
      if (inner.ok() && (::rmdir(child.c_str()) == 0 || errno == ENOENT)) continue;
      if (!inner.ok()) {
        if (first.ok()) first = std::move(inner);
        continue;
      }
      err = errno;
    }
    if (first.ok()) first = ErrnoError("removing " + child, err);
  }
  return first;
}

}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? Ok() : ErrnoError("removing " + path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("removing " + path, errno);
    return Ok();
  }
  // The owner mark goes last: a directory whose removal stopped half-way (no fd, EIO) still
  // says whose it is, so the next runner's sweep removes it as a dead runner's leftover
  // (contract 7.1); without the mark it would stay for good.
  if (Status contents = RemoveContents(path, kOwnerFile); !contents.ok()) {
    // Out of fds, no directory can be listed, but an empty one goes without one: what a start-up
    // that failed before writing anything (its owner mark refused with EMFILE) leaves. A full
    // disk's failed mark leaves the same empty directory: one path for both.
    if (::rmdir(path.c_str()) == 0) return Ok();
    return contents;
  }
  const std::string mark = path + "/" + kOwnerFile;
  if (::unlink(mark.c_str()) != 0 && errno != ENOENT) return ErrnoError("removing " + mark, errno);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("removing " + path, errno);
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
