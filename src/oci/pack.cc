// Packing an artifact into a layer (see internal.h): libarchive writes a pax tar into memory,
// libzstd compresses it. The tar's own digest is the image config's diff_id.
#include <sys/stat.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include "oci/c_libs.h"
#include "oci/digest.h"
#include "oci/internal.h"
#include "util/fd.h"

namespace sr::oci {
namespace {

namespace fs = std::filesystem;

struct WriterCloser {
  const ArchiveLib* ar;
  void operator()(archive* a) const { ar->write_free(a); }
};

// The destination as tar names: "/app/files/" → {"app", "files"}.
Result<std::vector<std::string>> DestParts(const std::string& dst) {
  std::vector<std::string> parts;
  for (const auto& p : fs::path(dst).lexically_normal()) {
    std::string s = p.string();
    if (s == "/" || s.empty() || s == ".") continue;
    if (s == "..") return FailedError("destination \"" + dst + "\" leaves the image");
    parts.push_back(s);
  }
  return parts;  // empty: the image root (a directory's contents go there)
}

class TarWriter {
 public:
  explicit TarWriter(const ArchiveLib& ar) : ar_(ar), a_(ar.write_new(), WriterCloser{&ar}) {
    ar_.write_set_format_pax_restricted(a_.get());
    ar_.write_set_bytes_in_last_block(a_.get(), 1);
    ar_.write_open(a_.get(), this, nullptr, &TarWriter::OnWrite, nullptr);
  }
  Status Dir(const std::string& name) { return Add(name + "/", AE_IFDIR, 0755, ""); }
  Status File(const std::string& name, const std::string& src) {
    struct stat sb {};
    if (::stat(src.c_str(), &sb) != 0) return ErrnoError(src, errno);
    file_bytes_ += static_cast<uint64_t>(sb.st_size);
    if (file_bytes_ > kMaxArtifactBytes) {
      return FailedError("the artifact is larger than the limit of " + std::to_string(kMaxArtifactBytes) +
                         " bytes for one layer (at " + src + ")");
    }
    auto data = ReadFile(src);
    if (!data.ok()) return data.error();
    return Add(name, AE_IFREG, (sb.st_mode & 0111) ? 0755 : 0644, *data);
  }
  Result<std::string> Finish() {
    if (ar_.write_close(a_.get()) != ARCHIVE_OK) return FailedError(ar_.error_string(a_.get()));
    return std::move(out_);
  }

 private:
  static la_ssize_t OnWrite(archive*, void* self, const void* buf, size_t n) {
    static_cast<TarWriter*>(self)->out_.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  Status Add(const std::string& name, mode_t type, mode_t perm, const std::string& data) {
    std::unique_ptr<archive_entry, decltype(ar_.entry_free)> e(ar_.entry_new(), ar_.entry_free);
    ar_.entry_set_pathname(e.get(), name.c_str());
    ar_.entry_set_filetype(e.get(), type);
    ar_.entry_set_perm(e.get(), perm);
    ar_.entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
    ar_.entry_set_mtime(e.get(), 0, 0);
    if (ar_.write_header(a_.get(), e.get()) != ARCHIVE_OK) return FailedError(ar_.error_string(a_.get()));
    if (!data.empty() && ar_.write_data(a_.get(), data.data(), data.size()) < 0) {
      return FailedError(ar_.error_string(a_.get()));
    }
    return Ok();
  }
  const ArchiveLib& ar_;
  std::unique_ptr<archive, WriterCloser> a_;
  std::string out_;
  uint64_t file_bytes_ = 0;
};

// Adds the directory tree `src` as `name` ("" = the root), entries sorted; only directories and
// regular files.
Status AddTree(TarWriter& tar, const fs::path& src, const std::string& name) {
  if (!name.empty()) SR_RETURN_IF_ERROR(tar.Dir(name));
  std::vector<fs::directory_entry> entries;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(src, ec)) entries.push_back(e);
  if (ec) return FailedError("reading " + src.string() + ": " + ec.message());
  std::sort(entries.begin(), entries.end(),
            [](const auto& x, const auto& y) { return x.path().filename() < y.path().filename(); });
  for (const auto& e : entries) {
    const std::string child = (name.empty() ? "" : name + "/") + e.path().filename().string();
    if (e.is_symlink(ec) || (!e.is_directory(ec) && !e.is_regular_file(ec))) {
      return FailedError(e.path().string() + ": only directories and regular files can go in a step image");
    }
    if (e.is_directory(ec)) {
      SR_RETURN_IF_ERROR(AddTree(tar, e.path(), child));
    } else {
      SR_RETURN_IF_ERROR(tar.File(child, e.path().string()));
    }
  }
  return Ok();
}

}  // namespace

Result<PackedLayer> PackLayer(const Artifact& artifact) {
  auto where = [&](const Error& e) { return e.Wrap(artifact.src + " -> " + artifact.dst); };
  auto parts = DestParts(artifact.dst);
  if (!parts.ok()) return where(parts.error());
  std::error_code ec;
  const fs::path src = fs::path(artifact.src).lexically_normal();
  auto status = fs::symlink_status(src, ec);
  if (ec) return where(FailedError(ec.message()));
  if (parts->empty() && !fs::is_directory(status)) {
    return where(FailedError("a file needs a destination path"));
  }
  auto ar = LoadArchive();
  if (!ar.ok()) return where(ar.error());
  TarWriter tar(**ar);
  std::string name;
  for (size_t i = 0; i + 1 < parts->size(); ++i) {
    name += (name.empty() ? "" : "/") + (*parts)[i];
    if (Status ok = tar.Dir(name); !ok.ok()) return where(ok.error());
  }
  if (!parts->empty()) name += (name.empty() ? "" : "/") + parts->back();
  Status added = fs::is_directory(status)      ? AddTree(tar, src, name)
                 : fs::is_regular_file(status) ? tar.File(name, src.string())
                                               : FailedError("not a directory or regular file");
  if (!added.ok()) return where(added.error());
  auto plain = tar.Finish();
  if (!plain.ok()) return where(plain.error());
  PackedLayer layer;
  layer.diff_id = DigestOf(*plain);
  layer.data.resize(ZSTD_compressBound(plain->size()));
  size_t n = ZSTD_compress(layer.data.data(), layer.data.size(), plain->data(), plain->size(), 3);
  if (ZSTD_isError(n)) return where(FailedError(std::string("zstd: ") + ZSTD_getErrorName(n)));
  layer.data.resize(n);
  layer.digest = DigestOf(layer.data);
  return layer;
}

Task<Result<PackedLayer>> PackLayerOffLoop(EventLoop& loop, const Artifact& artifact, CancelToken* cancel) {
  // The work owns its copy: after a cancel it may run on while the caller has moved on.
  std::function<Result<PackedLayer>()> work = [artifact] { return PackLayer(artifact); };
  co_return co_await OffLoop<PackedLayer>(loop, cancel, std::move(work));
}

}  // namespace sr::oci
