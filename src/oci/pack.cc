// Packing an artifact into a layer (see internal.h): libarchive writes a pax tar into memory,
// libzstd compresses it. The tar's own digest is the image config's diff_id.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
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

constexpr size_t kChunk = size_t{4} << 20;  // between two looks at the stop flag

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

Error Stopped() { return Error{Error::Kind::kCancelled, "cancelled"}; }

class TarWriter {
 public:
  TarWriter(const ArchiveLib& ar, const StopFlag* stop)
      : ar_(ar), a_(ar.write_new(), WriterCloser{&ar}), stop_(stop) {
    ar_.write_set_format_pax_restricted(a_.get());
    ar_.write_set_bytes_in_last_block(a_.get(), 1);
    ar_.write_open(a_.get(), this, nullptr, &TarWriter::OnWrite, nullptr);
  }
  // An archive given up on (an error, a stop) is closed here, while out_ still exists: closing
  // pads the entry in progress and ends the archive through OnWrite, which drops those bytes.
  // (archive_write_fail would skip the padding, but then write_free leaks libarchive's block
  // buffer.) The padding is at most the entry's size, bounded by kMaxArtifactBytes.
  ~TarWriter() {
    abandoned_ = true;
    if (!finished_) ar_.write_close(a_.get());
    a_.reset();
  }
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;
  Status Dir(const std::string& name) { return Header(name + "/", AE_IFDIR, 0755, 0); }
  // Streamed from the file in chunks (no copy of it in memory, and a stop is seen between them).
  Status File(const std::string& name, const std::string& src) {
    if (stop_ && stop_->load()) return Stopped();
    UniqueFd fd(::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return ErrnoError("open " + src, errno);
    struct stat sb {};
    if (::fstat(fd.get(), &sb) != 0) return ErrnoError(src, errno);
    if (!S_ISREG(sb.st_mode)) return FailedError("open " + src + ": not a regular file");
    file_bytes_ += static_cast<uint64_t>(sb.st_size);
    if (file_bytes_ > kMaxArtifactBytes) {
      return FailedError("the artifact is larger than the limit of " + std::to_string(kMaxArtifactBytes) +
                         " bytes for one layer (at " + src + ")");
    }
    const uint64_t size = static_cast<uint64_t>(sb.st_size);
    out_.reserve(out_.size() + size + 1024);
    SR_RETURN_IF_ERROR(Header(name, AE_IFREG, (sb.st_mode & 0111) ? 0755 : 0644, size));
    std::string buf(std::min<uint64_t>(size, kChunk), '\0');
    for (uint64_t done = 0; done < size;) {
      if (stop_ && stop_->load()) return Stopped();
      ssize_t n = ::read(fd.get(), buf.data(), std::min<uint64_t>(buf.size(), size - done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("read " + src, errno);
      if (n == 0) return FailedError(src + ": the file shrank while it was packed");
      if (ar_.write_data(a_.get(), buf.data(), static_cast<size_t>(n)) < 0) {
        return FailedError(ar_.error_string(a_.get()));
      }
      done += static_cast<uint64_t>(n);
    }
    return Ok();
  }
  Result<std::string> Finish() {
    if (ar_.write_close(a_.get()) != ARCHIVE_OK) return FailedError(ar_.error_string(a_.get()));
    finished_ = true;
    return std::move(out_);
  }

 private:
  static la_ssize_t OnWrite(archive*, void* self, const void* buf, size_t n) {
    auto* writer = static_cast<TarWriter*>(self);
    if (!writer->abandoned_) writer->out_.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  Status Header(const std::string& name, mode_t type, mode_t perm, uint64_t size) {
    std::unique_ptr<archive_entry, decltype(ar_.entry_free)> e(ar_.entry_new(), ar_.entry_free);
    ar_.entry_set_pathname(e.get(), name.c_str());
    ar_.entry_set_filetype(e.get(), type);
    ar_.entry_set_perm(e.get(), perm);
    ar_.entry_set_size(e.get(), static_cast<la_int64_t>(size));
    ar_.entry_set_mtime(e.get(), 0, 0);
    if (ar_.write_header(a_.get(), e.get()) != ARCHIVE_OK) return FailedError(ar_.error_string(a_.get()));
    return Ok();
  }
  const ArchiveLib& ar_;
  std::unique_ptr<archive, WriterCloser> a_;
  std::string out_;
  const StopFlag* stop_;
  uint64_t file_bytes_ = 0;
  bool abandoned_ = false, finished_ = false;
};

// zstd level 3, streamed in chunks so a stop is seen within one chunk's work.
Result<std::string> Compress(const std::string& plain, const StopFlag* stop) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return InternalError("zstd: out of memory");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), plain.size());
  std::string out;
  std::string buf(ZSTD_CStreamOutSize(), '\0');
  size_t pos = 0;
  for (;;) {
    if (stop && stop->load()) return Stopped();
    const size_t end = std::min(plain.size(), pos + kChunk);
    const ZSTD_EndDirective mode = end == plain.size() ? ZSTD_e_end : ZSTD_e_continue;
    ZSTD_inBuffer in{plain.data() + pos, end - pos, 0};
    size_t left = 0;
    do {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      left = ZSTD_compressStream2(cctx.get(), &o, &in, mode);
      if (ZSTD_isError(left)) return FailedError(std::string("zstd: ") + ZSTD_getErrorName(left));
      out.append(buf.data(), o.pos);
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
    pos = end;
    if (mode == ZSTD_e_end) return out;
  }
}

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

Result<std::string> DigestOf(std::string_view data, const StopFlag* stop) {
  Sha256 hash;
  for (size_t pos = 0; pos < data.size(); pos += kChunk) {
    if (stop && stop->load()) return Stopped();
    hash.Update(data.substr(pos, kChunk));
  }
  return hash.Finish();
}

Result<PackedLayer> PackLayer(const Artifact& artifact, const StopFlag* stop) {
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
  TarWriter tar(**ar, stop);
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
  auto diff_id = DigestOf(*plain, stop);
  if (!diff_id.ok()) return diff_id.error();
  layer.diff_id = std::move(*diff_id);
  auto data = Compress(*plain, stop);
  if (!data.ok()) return data.error().kind == Error::Kind::kCancelled ? data.error() : where(data.error());
  layer.data = std::move(*data);
  auto digest = DigestOf(layer.data, stop);
  if (!digest.ok()) return digest.error();
  layer.digest = std::move(*digest);
  return layer;
}

Task<Result<PackedLayer>> PackLayerOffLoop(EventLoop& loop, const Artifact& artifact, CancelToken* cancel) {
  // The work owns its copy: after a cancel it may run on while the caller has moved on.
  std::function<Result<PackedLayer>(const StopFlag&)> work = [artifact](const StopFlag& stop) {
    return PackLayer(artifact, &stop);
  };
  co_return co_await OffLoop<PackedLayer>(loop, cancel, std::move(work));
}

}  // namespace sr::oci
