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
  TempDir() = default;
  TempDir(TempDir&& o) noexcept;
  TempDir& operator=(TempDir&& o) noexcept;
  TempDir(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  /// Removes the directory now (idempotent).
  void Remove();

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

/// Removes a file or a directory tree; missing paths are fine.
Status RemoveTree(const std::string& path);

/// Caches are named after $TMPDIR, often a shared /tmp: a cache directory someone else created
/// (or can write to, or a symlink to one) could hand us their files. Ok when `dir` is a real
/// directory of this user that nobody else can write to; else `cache <dir> is not a private
/// directory of this user (owner uid N, mode 0777)`.
Status CheckPrivate(const std::string& dir);
/// Creates `dir` with mode 0700 unless it exists (its parent must), then CheckPrivate(dir).
Status MakePrivateDir(const std::string& dir);

}  // namespace sr
