// Unpacking a layer (see internal.h). libarchive reads the tar and sniffs its compression; we
// decide what lands on disk: directories and regular files under `dest`, nothing else.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "oci/c_libs.h"
#include "oci/internal.h"
#include "util/fd.h"

namespace sr::oci {
namespace {

// A layer may not unpack to more than this (a small archive can expand enormously).
constexpr int64_t kMaxUnpackedBytes = int64_t{4} << 30;

struct ArchiveCloser {
  const ArchiveLib* ar;
  void operator()(archive* a) const { ar->read_free(a); }
};

// "./a//b/" → {"a", "b"}; an absolute name or a ".." component is refused.
Result<std::vector<std::string>> SafeParts(const std::string& name) {
  if (!name.empty() && name[0] == '/') return FailedError("absolute name");
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (part == "..") return FailedError("name leaves the step directory");
    if (!part.empty() && part != ".") parts.push_back(part);
    start = end + 1;
  }
  return parts;
}

// Creates every directory of `parts` under `dest` that is missing (0755).
Status MakeDirs(const std::string& dest, const std::vector<std::string>& parts, size_t count) {
  std::string path = dest;
  for (size_t i = 0; i < count; ++i) {
    path += "/" + parts[i];
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + path, errno);
    struct stat sb {};
    // Only we write here, and we make no links; still, never follow one out of `dest`.
    if (::lstat(path.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      return FailedError(path + " is not a directory");
    }
  }
  return Ok();
}

}  // namespace

Task<Status> UnpackLayer(EventLoop& loop, int blob_fd, const std::string& digest,
                         const std::string& dest, CancelToken* cancel) {
  auto fail = [&](const std::string& what) { return FailedError("layer " + digest + ": " + what); };
  auto loaded = LoadArchive();
  if (!loaded.ok()) co_return fail(loaded.error().message);
  const ArchiveLib& ar = **loaded;
  std::unique_ptr<archive, ArchiveCloser> a(ar.read_new(), ArchiveCloser{&ar});
  ar.read_support_filter_zstd(a.get());
  ar.read_support_filter_gzip(a.get());
  ar.read_support_filter_none(a.get());
  ar.read_support_format_tar(a.get());
  if (ar.read_open_fd(a.get(), blob_fd, 1 << 16) != ARCHIVE_OK) {
    co_return fail(std::string("not a tar archive (zstd, gzip or plain): ") + ar.error_string(a.get()));
  }
  Slicer slicer(loop, cancel);
  int64_t total = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    int r = ar.read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) co_return fail(ar.error_string(a.get()));
    const char* raw_name = ar.entry_pathname(entry);
    const std::string name = raw_name ? raw_name : "";
    auto parts = SafeParts(name);
    if (!parts.ok()) co_return fail("entry \"" + name + "\": " + parts.error().message);
    const mode_t type = ar.entry_filetype(entry);
    if (parts->empty() || (type != AE_IFDIR && type != AE_IFREG)) {
      continue;  // links, devices, fifos are not unpacked (as in Go's fetch)
    }
    if (type == AE_IFDIR) {
      if (Status ok = MakeDirs(dest, *parts, parts->size()); !ok.ok()) co_return fail(ok.error().message);
      continue;
    }
    if (Status ok = MakeDirs(dest, *parts, parts->size() - 1); !ok.ok()) co_return fail(ok.error().message);
    std::string path = dest;
    for (const auto& p : *parts) path += "/" + p;
    // A later layer replaces a file of an earlier one.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) co_return fail(ErrnoError("replace " + path, errno).message);
    const mode_t mode = (ar.entry_perm(entry) & 0111) ? 0755 : 0644;
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!out.valid()) co_return fail(ErrnoError("create " + path, errno).message);
    for (;;) {
      const void* buf = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      r = ar.read_data_block(a.get(), &buf, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) co_return fail("entry \"" + name + "\": " + ar.error_string(a.get()));
      total += static_cast<int64_t>(size);
      if (total > kMaxUnpackedBytes) co_return fail("unpacks to more than 4 GiB");
      // Sparse entries come with offsets; write where they say.
      if (::lseek(out.get(), offset, SEEK_SET) < 0) co_return fail(ErrnoError("seek " + path, errno).message);
      Status wrote = WriteAll(out.get(), std::string_view(static_cast<const char*>(buf), size));
      if (!wrote.ok()) co_return fail(wrote.error().message);
      if (slicer.Due()) {
        Status ok = co_await slicer.Yield();
        if (!ok.ok()) co_return ok.error();
      }
    }
    if (slicer.Due()) {
      Status ok = co_await slicer.Yield();
      if (!ok.ok()) co_return ok.error();
    }
  }
  co_return Ok();
}

}  // namespace sr::oci
