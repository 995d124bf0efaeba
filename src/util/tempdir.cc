#include "util/tempdir.h"

#include <cerrno>
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
