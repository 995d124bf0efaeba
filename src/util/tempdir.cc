#include "util/tempdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <sys/random.h>
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

namespace {

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// A new marked directory under a transit name in `parent`.
Result<std::string> MakeMarkedTransit(const std::string& parent) {
  // Without its start time a transit name would name nobody: nothing is made.
  if (SelfStartTicks() == 0) return InternalError("cannot read this process's start time in /proc/self/stat");
  std::string path = parent + "/" + SelfTransitPrefix() + "XXXXXX";
  if (::mkdtemp(path.data()) == nullptr) return ErrnoError("mkdir", errno);
  if (Status marked = MarkOwned(path); !marked.ok()) {
    ::rmdir(path.c_str());
    return marked.error();
  }
  return path;
}

// The six characters mkdtemp would put in place of XXXXXX.
std::string RandomSuffix() {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[6] = {};
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    static unsigned counter = 0;  // no entropy (very early boot): unique enough with the retry
    for (auto& b : bytes) b = static_cast<unsigned char>(::getpid() + counter++ * 7919u);
  }
  std::string s;
  for (unsigned char b : bytes) s += kChars[b % (sizeof kChars - 1)];
  return s;
}

// Renames the marked transit directory to `path` unless `path` exists: 1 renamed, 0 exists,
// -1 with errno set otherwise.
int PlaceTransit(const std::string& transit, const std::string& path) {
  if (::renameat2(AT_FDCWD, transit.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) return 1;
  return errno == EEXIST ? 0 : -1;
}

// MakeOwnedDir, its errors not yet naming what was made.
Result<bool> PlaceOwnedDir(const std::string& path) {
  auto transit = MakeMarkedTransit(ParentOf(path));
  if (!transit.ok()) return transit.error();
  const int placed = PlaceTransit(*transit, path);
  if (placed == 1) return true;
  const int err = errno;
  (void)RemoveTree(*transit);
  if (placed == 0) return false;
  if (err != EINVAL) return ErrnoError("rename", err);
  // No RENAME_NOREPLACE on this filesystem: in place, marked right after (a window remains).
  if (::mkdir(path.c_str(), 0700) != 0) {
    if (errno == EEXIST) return false;
    return ErrnoError("mkdir", errno);
  }
  if (Status marked = MarkOwned(path); !marked.ok()) {
    ::rmdir(path.c_str());
    return marked.error();
  }
  return true;
}

}  // namespace

Result<bool> MakeOwnedDir(const std::string& path) {
  auto made = PlaceOwnedDir(path);
  if (!made.ok()) return made.error().Wrap("creating " + path);
  return made;
}

Result<TempDir> TempDir::CreateOwned(const std::string& prefix, const std::string& base) {
  const std::string stem = (base.empty() ? std::string("/tmp") : base) + "/" + prefix;
  // mkdtemp's way of finding a free name, with our own rename in place of its mkdir.
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string path = stem + RandomSuffix();
    auto made = PlaceOwnedDir(path);
    if (!made.ok()) return made.error().Wrap("creating " + stem + "XXXXXX");
    if (*made) return TempDir(std::move(path), true);
  }
  return InternalError("creating " + stem + "XXXXXX: no free name in 100 attempts");
}

void MoveToTransit(std::string& path) {
  if (path.empty()) return;
  const size_t slash = path.rfind('/');
  if (path.compare(slash == std::string::npos ? 0 : slash + 1, sizeof kTransitPrefix - 1, kTransitPrefix) == 0) {
    return;  // renamed by an earlier attempt
  }
  std::string transit = ParentOf(path) + "/" + SelfTransitPrefix() + RandomSuffix();
  if (PlaceTransit(path, transit) == 1) path = std::move(transit);
}

Status RemoveOwnedTree(std::string& path) {
  MoveToTransit(path);  // if it cannot be renamed (gone already, say), removed where it is
  return RemoveTree(path);
}

TempDir::TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, {})), owned_(o.owned_) {}

TempDir& TempDir::operator=(TempDir&& o) noexcept {
  if (this != &o) {
    Remove();
    path_ = std::exchange(o.path_, {});
    owned_ = o.owned_;
  }
  return *this;
}

TempDir::~TempDir() { Remove(); }

void TempDir::Remove() {
  if (path_.empty()) return;
  (void)(owned_ ? RemoveOwnedTree(path_) : RemoveTree(path_));
  path_.clear();
}

}  // namespace sr
