// A private temporary directory (mode 0700) removed with everything in it when the owner goes.
#pragma once

#include <string>

#include "util/result.h"

namespace sr {

class TempDir {
 public:
  /// Creates `<base>/<prefix>XXXXXX`; base "" means /tmp (callers pass $TMPDIR's value: the
  /// library reads no environment).
  static Result<TempDir> Create(const std::string& prefix, const std::string& base = "");
  /// The same, marked as this process's (util/owner.h) from the moment it has its name, and
  /// removed through a transit name (MakeOwnedDir, RemoveOwnedTree): a dead owner's leftover
  /// whenever the owner is killed.
  static Result<TempDir> CreateOwned(const std::string& prefix, const std::string& base = "");
  TempDir() = default;
  TempDir(TempDir&& o) noexcept;
  TempDir& operator=(TempDir&& o) noexcept;
  TempDir(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  /// Removes the directory now (idempotent).
  void Remove();

 private:
  explicit TempDir(std::string path, bool owned = false) : path_(std::move(path)), owned_(owned) {}
  std::string path_;
  bool owned_ = false;
};

/// Removes a file or a directory tree; missing paths are fine.
Status RemoveTree(const std::string& path);

/// Creates directory `path` (mode 0700) marked as this process's (util/owner.h): it is made
/// under a transit name beside `path` (owner.h kTransitPrefix), marked, and renamed into place
/// with RENAME_NOREPLACE, so no SIGKILL leaves it unmarked. False, with nothing made, when
/// `path` exists. (Where the filesystem cannot rename without replacing, it is made in place and
/// marked right after, as before.)
Result<bool> MakeOwnedDir(const std::string& path);
/// Removes a directory made by MakeOwnedDir or TempDir::CreateOwned: MoveToTransit, then
/// RemoveTree, so no SIGKILL half-way leaves it unmarked. A removal that failed is retried with
/// the `path` it leaves.
Status RemoveOwnedTree(std::string& path);
/// Renames `path` to a transit name of this process beside it and sets `path` to that name;
/// leaves both as they are if `path` has one already or cannot be renamed.
void MoveToTransit(std::string& path);

/// Caches are named after $TMPDIR, often a shared /tmp: a cache directory someone else created
/// (or can write to, or a symlink to one) could hand us their files. Ok when `dir` is a real
/// directory of this user that nobody else can write to; else `cache <dir> is not a private
/// directory of this user (owner uid N, mode 0777)`.
Status CheckPrivate(const std::string& dir);
/// Creates `dir` with mode 0700 unless it exists (its parent must), then CheckPrivate(dir).
Status MakePrivateDir(const std::string& dir);

}  // namespace sr
