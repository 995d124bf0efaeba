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

}  // namespace sr
