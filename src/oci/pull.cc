// Pulling a step image: tag → index → this platform's manifest → layers (see oci.h).
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "oci/internal.h"
#include "oci/registry.h"
#include "util/fd.h"
#include "util/json_field.h"
#include "util/tempdir.h"

namespace sr::oci {
namespace {

using json = nlohmann::json;

Result<json> ParseJson(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return FailedError(what + " is not a JSON object");
  return j;
}

// The media type of a manifest document: its own field, else the response's Content-Type.
std::string MediaTypeOf(const json& doc, const std::string& content_type) {
  if (doc.contains("mediaType") && doc["mediaType"].is_string()) return doc["mediaType"];
  return content_type.substr(0, content_type.find(';'));
}

// The rest of an open file (a manifest: small).
Result<std::string> ReadAll(int fd, const std::string& path) {
  std::string out;
  char buf[1 << 14];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading " + path, errno);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

bool IsIndex(const std::string& type) { return type == kIndexType || type == kDockerListType; }

// One entry of an index: its digest and platform ("os/arch", or "os" without an architecture).
struct IndexEntry {
  std::string digest, os, arch;
  std::string Platform() const { return arch.empty() ? os : os + "/" + arch; }
};

Result<IndexEntry> ReadIndexEntry(const json& m, const std::string& what) {
  IndexEntry e;
  auto digest = JsonField<std::string>(m, "digest", what);
  if (!digest.ok()) return digest.error();
  auto platform = JsonField<json>(m, "platform", what, json::object());
  if (!platform.ok()) return platform.error();
  auto os = JsonField<std::string>(*platform, "os", what + " platform");
  if (!os.ok()) return os.error();
  auto arch = JsonField<std::string>(*platform, "architecture", what + " platform");
  if (!arch.ok()) return arch.error();
  return IndexEntry{*digest, *os, *arch};
}

// This host first, then OS `generic` with no architecture (Go's fetch, platform.go).
Result<IndexEntry> ChooseManifest(const json& index, const std::string& what, const ImageRef& ref) {
  const auto [os, arch] = HostPlatform();
  auto manifests = JsonField<json>(index, "manifests", what, json::array());
  if (!manifests.ok()) return manifests.error();
  if (manifests->empty()) return FailedError(what + " has no manifests");
  std::vector<IndexEntry> entries;
  for (const json& m : *manifests) {
    auto e = ReadIndexEntry(m, what + " manifests[" + std::to_string(entries.size()) + "]");
    if (!e.ok()) return e.error();
    entries.push_back(std::move(*e));
  }
  std::string seen;
  for (const bool generic : {false, true}) {
    for (const IndexEntry& e : entries) {
      if (!generic && e.os == os && e.arch == arch) return e;
      if (generic && e.os == "generic" && e.arch.empty()) return e;
    }
  }
  for (const IndexEntry& e : entries) {
    if (!e.os.empty()) seen += (seen.empty() ? "" : ", ") + e.Platform();
  }
  return FailedError("no manifest for platform " + os + "/" + arch + " or generic in " +
                     ref.ToString() + " (it has: " + (seen.empty() ? "none" : seen) + ")");
}

}  // namespace

std::string ImageRef::ToString() const {
  if (tag.rfind("sha256:", 0) == 0) return registry + "/" + repository + "@" + tag;
  return registry + "/" + repository + ":" + tag;
}

Result<ImageRef> ParseImageRef(const std::string& text) {
  ImageRef ref;
  std::string rest = text;
  if (auto at = rest.find('@'); at != std::string::npos) {
    ref.tag = rest.substr(at + 1);
    rest = rest.substr(0, at);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos &&
                                          rest.find('/', colon) == std::string::npos) {
    ref.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (ref.tag.empty()) ref.tag = "latest";
  auto slash = rest.find('/');
  std::string first = rest.substr(0, slash);
  if (slash != std::string::npos &&
      (first.find('.') != std::string::npos || first.find(':') != std::string::npos || first == "localhost")) {
    ref.registry = first;
    ref.repository = rest.substr(slash + 1);
  } else {
    ref.registry = "index.docker.io";
    ref.repository = slash == std::string::npos ? "library/" + rest : rest;
  }
  if (ref.repository.empty() || rest.empty()) return FailedError("invalid image reference \"" + text + "\"");
  return ref;
}

std::pair<std::string, std::string> HostPlatform() {
  utsname u{};
  ::uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") m = "amd64";
  else if (m == "aarch64") m = "arm64";
  else if (m == "i686" || m == "i386") m = "386";
  return {"linux", m};
}

namespace {
Task<Result<PullResult>> PullUnguarded(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                                       std::string dest, CancelToken* cancel) {
  auto fail = [&](const Error& e) {
    return e.kind == Error::Kind::kCancelled ? e : e.Wrap("fetching OCI image \"" + ref.ToString() + "\"");
  };
  Http http(loop, HttpOptionsFor(options));
  Registry registry(http, options, ref.registry, ref.repository, /*push=*/false);
  BlobCache cache(options.cache_dir);

  // The tag is mutable: always ask the registry. Everything below it is named by digest.
  HttpRequest tag_request;
  tag_request.url = registry.Path("manifests/" + ref.tag);
  tag_request.headers.push_back(kAcceptManifests);
  auto top = co_await registry.Send(tag_request, cancel);
  if (!top.ok()) co_return fail(top.error());
  if (top->status == 404) {
    co_return fail(FailedError("tag \"" + ref.tag + "\" not found in " + ref.registry + "/" +
                               ref.repository + " (" + DescribeFailure(*top) + ")"));
  }
  if (top->status != 200) co_return fail(FailedError("GET manifest: " + DescribeFailure(*top)));
  const std::string header_digest = top->Header("docker-content-digest");
  if (!header_digest.empty() && header_digest.rfind("sha256:", 0) == 0 &&
      DigestOf(top->body) != header_digest) {
    co_return fail(FailedError("digest mismatch: the manifest of tag \"" + ref.tag +
                               "\" does not match its Docker-Content-Digest " + header_digest));
  }
  auto doc = ParseJson(top->body, "the manifest of tag \"" + ref.tag + "\"");
  if (!doc.ok()) co_return fail(doc.error());

  // Fetches a blob or manifest by digest, through the cache.
  auto fetch = [&](std::string path, std::string accept) -> Download {
    return [&registry, cancel, path, accept](Sink sink) -> Task<Status> {
      HttpRequest r;
      r.url = path;
      if (!accept.empty()) r.headers.push_back(accept);
      r.on_data = sink;
      auto got = co_await registry.Send(r, cancel);
      if (!got.ok()) co_return got.error();
      if (got->status != 200) co_return FailedError("GET " + path + ": " + DescribeFailure(*got));
      co_return Ok();
    };
  };
  PullResult result;
  json manifest = *doc;
  result.digest = header_digest.empty() ? DigestOf(top->body) : header_digest;
  result.platform = "any";
  std::string what = "the manifest of tag \"" + ref.tag + "\"";
  if (IsIndex(MediaTypeOf(*doc, top->Header("content-type")))) {
    auto chosen = ChooseManifest(*doc, "the index of tag \"" + ref.tag + "\"", ref);
    if (!chosen.ok()) co_return fail(chosen.error());
    result.digest = chosen->digest;
    result.platform = chosen->Platform();
    if (result.platform.empty()) result.platform = "generic";
    what = "manifest " + result.digest;
    auto blob = co_await cache.Get(loop, result.digest,
                                   fetch(registry.Path("manifests/" + result.digest), kAcceptManifests), cancel);
    if (!blob.ok()) co_return fail(blob.error().Wrap("manifest " + result.digest));
    auto text = ReadAll(blob->fd.get(), blob->path);
    if (!text.ok()) co_return fail(text.error());
    auto parsed = ParseJson(*text, "manifest " + result.digest);
    if (!parsed.ok()) co_return fail(parsed.error());
    manifest = *parsed;
  }
  auto layers = JsonField<json>(manifest, "layers", what, json::array());
  if (!layers.ok()) co_return fail(layers.error());
  if (!manifest.contains("layers")) co_return fail(FailedError(what + " has no layers"));
  std::vector<std::string> digests;
  for (const json& layer : *layers) {
    auto digest = JsonField<std::string>(layer, "digest", what + " layers[" + std::to_string(digests.size()) + "]");
    if (!digest.ok()) co_return fail(digest.error());
    digests.push_back(std::move(*digest));
  }

  if (::mkdir(dest.c_str(), 0755) != 0) co_return fail(ErrnoError("creating " + dest, errno));
  struct RemoveUnlessKept {
    std::string path;
    ~RemoveUnlessKept() { if (!path.empty()) (void)RemoveTree(path); }
  } guard{dest};
  for (const std::string& digest : digests) {
    bool downloaded = false;
    auto blob = co_await cache.Get(loop, digest, fetch(registry.Path("blobs/" + digest), ""), cancel,
                                   &downloaded);
    if (!blob.ok()) co_return fail(blob.error().Wrap("layer " + digest));
    ++result.layers;
    if (downloaded) ++result.layers_downloaded;
    Status unpacked = co_await UnpackLayer(loop, blob->fd.get(), digest, dest, cancel);
    if (!unpacked.ok()) co_return fail(unpacked.error());
  }
  guard.path.clear();
  co_return result;
}
}  // namespace

Task<Result<PullResult>> Pull(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                              std::string dest, CancelToken* cancel) {
  const std::string what = "fetching OCI image \"" + ref.ToString() + "\"";
  return Guarded(PullUnguarded(loop, options, std::move(ref), std::move(dest), cancel), what);
}

}  // namespace sr::oci
