// The OCI layer packer, unpacker and blob cache, without a registry: hostile archives, killed
// downloads, cache directories that are not private, swapped files, packing off the loop, limits.
#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "oci/digest.h"
#include "oci/internal.h"
#include "oci/test_loop.h"
#include "util/fd.h"
#include "util/tempdir.h"

namespace sr::oci {
namespace {

using ::testing::HasSubstr;

class Layers : public ::testing::Test {
 protected:
  void SetUp() override { loop = std::move(EventLoop::Create().value()); }
  Status Unpack(const std::string& blob, const std::string& dest) {
    UniqueFd fd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
    return RunOnLoop<Status>(*loop, UnpackLayer(*loop, fd.get(), "sha256:test", dest, nullptr));
  }
  /// Writes a plain tar with the given entries (name, type, data).
  std::string HostileTar(const std::vector<std::tuple<std::string, mode_t, std::string>>& entries) {
    const std::string path = tmp.path() + "/hostile.tar";
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path.c_str());
    for (const auto& [name, type, data] : entries) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, name.c_str());
      archive_entry_set_filetype(e, type);
      archive_entry_set_perm(e, 0644);
      if (type == AE_IFLNK) archive_entry_set_symlink(e, data.c_str());
      archive_entry_set_size(e, type == AE_IFREG ? static_cast<la_int64_t>(data.size()) : 0);
      archive_write_header(a, e);
      if (type == AE_IFREG) archive_write_data(a, data.data(), data.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return path;
  }
  std::unique_ptr<EventLoop> loop;
  TempDir tmp = std::move(TempDir::Create("oci-layers-").value());
};

TEST_F(Layers, PackThenUnpackKeepsFilesAndTheExecutableBit) {
  std::filesystem::create_directories(tmp.path() + "/src/sub");
  std::ofstream(tmp.path() + "/src/step.yml") << "spec:\n";
  std::ofstream(tmp.path() + "/src/sub/run") << "#!/bin/sh\n";
  ::chmod((tmp.path() + "/src/sub/run").c_str(), 0755);
  auto layer = PackLayer({tmp.path() + "/src", "/app/step"});
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  auto again = PackLayer({tmp.path() + "/src", "/app/step"});
  EXPECT_EQ(DigestOf(layer->data), DigestOf(again->data));  // reproducible
  ASSERT_TRUE(WriteAll(UniqueFd(::open((tmp.path() + "/layer").c_str(), O_WRONLY | O_CREAT, 0600)).get(),
                       layer->data).ok());
  std::filesystem::create_directories(tmp.path() + "/out");
  Status ok = Unpack(tmp.path() + "/layer", tmp.path() + "/out");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ReadFile(tmp.path() + "/out/app/step/step.yml").value(), "spec:\n");
  struct stat sb {};
  ASSERT_EQ(::stat((tmp.path() + "/out/app/step/sub/run").c_str(), &sb), 0);
  EXPECT_TRUE(sb.st_mode & S_IXUSR);
}

TEST_F(Layers, NothingEscapesTheDestination) {
  std::filesystem::create_directories(tmp.path() + "/out");
  Status up = Unpack(HostileTar({{"a/../../evil", AE_IFREG, "x"}}), tmp.path() + "/out");
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.error().message, HasSubstr("entry \"a/../../evil\": name leaves the step directory"));
  Status abs = Unpack(HostileTar({{"/etc/evil", AE_IFREG, "x"}}), tmp.path() + "/out");
  ASSERT_FALSE(abs.ok());
  EXPECT_THAT(abs.error().message, HasSubstr("absolute name"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/evil"));

  // Links and devices are not unpacked; a file written "through" a link name lands inside.
  Status links = Unpack(HostileTar({{"link", AE_IFLNK, "/etc"},
                                    {"dev", AE_IFCHR, ""},
                                    {"link/passwd", AE_IFREG, "mine"}}),
                        tmp.path() + "/out");
  ASSERT_TRUE(links.ok()) << links.error().message;
  EXPECT_FALSE(std::filesystem::is_symlink(tmp.path() + "/out/link"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/out/dev"));
  EXPECT_EQ(ReadFile(tmp.path() + "/out/link/passwd").value(), "mine");
}

TEST_F(Layers, NotATar) {
  std::ofstream(tmp.path() + "/junk") << "this is not an archive";
  std::filesystem::create_directories(tmp.path() + "/out");
  Status s = Unpack(tmp.path() + "/junk", tmp.path() + "/out");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr("layer sha256:test: "));
}

// A download killed with its runner (SIGKILL, a full disk) leaves its temporary file; the next
// fetch of that digest, holding the digest's lock, removes it before downloading again.
TEST_F(Layers, CacheRemovesTheTempFilesOfKilledDownloads) {
  BlobCache cache(tmp.path() + "/cache");
  const std::string blob = "hello";
  const std::string digest = DigestOf(blob);
  const std::string hex = digest.substr(7);
  std::filesystem::create_directories(cache.dir());
  const std::string stale = cache.dir() + "/." + hex + ".tmp-999999-1";
  const std::string other = cache.dir() + "/.0000.tmp-999999-2";  // another digest's: not ours
  std::ofstream(stale) << "hel";
  std::ofstream(other) << "x";
  bool downloaded = false;
  auto got = RunOnLoop<Result<CachedBlob>>(
      *loop, cache.Get(*loop, digest, [&](Sink sink) -> Task<Status> { co_return sink(blob); },
                       nullptr, &downloaded));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_TRUE(downloaded);
  EXPECT_EQ(ReadFile(got->path).value(), blob);
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(other));
}

// The cache lives in a shared $TMPDIR by default: a directory of its path that another user owns
// or can write to (pre-created to swap a blob in under us) is refused, naming it, before any
// download; the directories it creates itself are 0700.
TEST_F(Layers, CacheRefusesADirectoryThatIsNotPrivate) {
  const std::string blob = "hello";
  const std::string digest = DigestOf(blob);
  int downloads = 0;
  auto get = [&](BlobCache& cache) {
    return RunOnLoop<Result<CachedBlob>>(
        *loop, cache.Get(*loop, digest, [&](Sink sink) -> Task<Status> { ++downloads; co_return sink(blob); },
                         nullptr));
  };
  const std::string root = tmp.path() + "/cache";
  ASSERT_EQ(::mkdir(root.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(root.c_str(), 0777), 0);  // as an attacker would leave it
  BlobCache cache(root);
  auto open = get(cache);
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.error().message, "cache " + root + " is not a private directory of this user (owner uid " +
                                      std::to_string(::geteuid()) + ", mode 0777)");

  // A private root with a world-writable directory below it.
  ASSERT_EQ(::chmod(root.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((root + "/oci").c_str(), 0777), 0);
  ASSERT_EQ(::chmod((root + "/oci").c_str(), 0777), 0);
  auto below = get(cache);
  ASSERT_FALSE(below.ok());
  EXPECT_THAT(below.error().message, HasSubstr("cache " + root + "/oci is not a private directory"));

  // Owned by another user (nobody), even with a mode nobody else may write to.
  ASSERT_EQ(::chmod((root + "/oci").c_str(), 0755), 0);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((root + "/oci").c_str(), 65534, 65534), 0);
    auto other = get(cache);
    ASSERT_FALSE(other.ok());
    EXPECT_THAT(other.error().message, HasSubstr("cache " + root + "/oci is not a private directory of "
                                                 "this user (owner uid 65534, mode 0755)"));
    ASSERT_EQ(::chown((root + "/oci").c_str(), 0, 0), 0);
  }
  EXPECT_EQ(downloads, 0);

  // Fixed: the blob is fetched, and the directories made here are private.
  auto fetched = get(cache);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  EXPECT_EQ(downloads, 1);
  struct stat st {};
  ASSERT_EQ(::stat(cache.dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

// The blob handed back is the file that was hashed: renaming another file over the entry after
// the check does not change what the caller reads.
TEST_F(Layers, CacheHandsBackTheVerifiedFileNotTheName) {
  BlobCache cache(tmp.path() + "/cache");
  const std::string blob = "the real layer";
  const std::string digest = DigestOf(blob);
  for (int round = 0; round < 2; ++round) {  // downloaded, then from the cache
    auto got = RunOnLoop<Result<CachedBlob>>(
        *loop, cache.Get(*loop, digest, [&](Sink sink) -> Task<Status> { co_return sink(blob); }, nullptr));
    ASSERT_TRUE(got.ok()) << got.error().message;
    const std::string swapped = tmp.path() + "/swapped";
    std::ofstream(swapped) << "an attacker's tar";
    ASSERT_EQ(::rename(swapped.c_str(), got->path.c_str()), 0);
    char buf[64] = {};
    ASSERT_EQ(::read(got->fd.get(), buf, sizeof buf), static_cast<ssize_t>(blob.size()));
    EXPECT_EQ(std::string(buf), blob);
  }
}

// A cancel the test triggers (from a loop timer).
class TestCancel final : public CancelToken {
 public:
  bool requested() const override { return requested_; }
  std::shared_ptr<void> OnCancel(std::function<void()> fn) override {
    fns_.push_back(std::move(fn));
    if (requested_) fns_.back()();
    return std::make_shared<int>(0);
  }
  void Trigger() {
    requested_ = true;
    for (auto& fn : fns_) fn();
  }

 private:
  bool requested_ = false;
  std::vector<std::function<void()>> fns_;
};

// Packing a large artifact happens off the loop thread: a timer due at once fires while the
// pack is still running (on the loop thread it could only fire after), and the layer is the same
// as PackLayer's. Ordering only, no durations: 64 MiB take far longer to read, hash and
// compress than one turn of an idle loop.
TEST_F(Layers, PackingALargeArtifactLeavesTheLoopTurning) {
  const std::string big = tmp.path() + "/big";
  {
    std::ofstream out(big, std::ios::binary);
    std::string chunk(1 << 20, '\0');
    for (int i = 0; i < 64; ++i) {
      for (size_t j = 0; j < chunk.size(); j += 4096) chunk[j] = static_cast<char>(i + j);
      out << chunk;
    }
  }
  const Artifact artifact{big, "/big"};
  bool packed = false, timer_fired_while_packing = false;
  loop->After(Duration(0), [&] { timer_fired_while_packing = !packed; });
  auto pack = [&]() -> Task<Result<PackedLayer>> {
    auto l = co_await PackLayerOffLoop(*loop, artifact, nullptr);
    packed = true;
    co_return l;
  };
  auto layer = RunOnLoop<Result<PackedLayer>>(*loop, pack());
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  EXPECT_TRUE(timer_fired_while_packing);
  auto inline_layer = PackLayer(artifact);
  ASSERT_TRUE(inline_layer.ok());
  EXPECT_EQ(layer->digest, DigestOf(inline_layer->data));
  EXPECT_EQ(layer->diff_id, inline_layer->diff_id);

  // A cancel during the pack ends the wait at once; the helper's result is dropped.
  TestCancel cancel;
  loop->After(Duration(0), [&] { cancel.Trigger(); });
  auto cancelled = RunOnLoop<Result<PackedLayer>>(*loop, PackLayerOffLoop(*loop, artifact, &cancel));
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().kind, Error::Kind::kCancelled);

  // The cancel also sets the helper's stop flag, so it does not pack on for nothing.
  const StopFlag stop{true};
  auto stopped = PackLayer(artifact, &stop);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().kind, Error::Kind::kCancelled);
}

TEST_F(Layers, AnArtifactOverTheLimitIsRefusedNamingIt) {
  const std::string huge = tmp.path() + "/huge";
  UniqueFd fd(::open(huge.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(kMaxArtifactBytes) + 1), 0);  // sparse
  auto layer = PackLayer({huge, "/huge"});
  ASSERT_FALSE(layer.ok());
  EXPECT_EQ(layer.error().message, huge + " -> /huge: the artifact is larger than the limit of 1073741824 "
                                   "bytes for one layer (at " + huge + ")");
}

}  // namespace
}  // namespace sr::oci
