// Pulling a step image: tag → index → this platform's manifest → layers (see oci.h).
#include <sys/stat.h>
#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "oci/internal.h"
#include "oci/registry.h"
#include "util/fd.h"
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

bool IsIndex(const std::string& type) { return type == kIndexType || type == kDockerListType; }

std::string PlatformName(const json& p) {
  std::string os = p.value("os", ""), arch = p.value("architecture", "");
  return arch.empty() ? os : os + "/" + arch;
}

// This host first, then OS `generic` with no architecture (Go's fetch, platform.go).
Result<json> ChooseManifest(const json& index, const ImageRef& ref) {
  const auto [os, arch] = HostPlatform();
  const json empty = json::object();
  if (!index.contains("manifests") || !index["manifests"].is_array()) {
    return FailedError("the index has no manifests");
  }
  std::string seen;
  for (const bool generic : {false, true}) {
    for (const json& m : index["manifests"]) {
      if (!m.is_object()) continue;
      const json& p = m.contains("platform") && m["platform"].is_object() ? m["platform"] : empty;
      const std::string mos = p.value("os", ""), march = p.value("architecture", "");
      if (!generic && mos == os && march == arch) return m;
      if (generic && mos == "generic" && march.empty()) return m;
    }
  }
  for (const json& m : index["manifests"]) {
    if (m.is_object() && m.contains("platform") && m["platform"].is_object()) {
      seen += (seen.empty() ? "" : ", ") + PlatformName(m["platform"]);
    }
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

Task<Result<PullResult>> Pull(EventLoop& loop, const ClientOptions& options, ImageRef ref,
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
  if (IsIndex(MediaTypeOf(*doc, top->Header("content-type")))) {
    auto chosen = ChooseManifest(*doc, ref);
    if (!chosen.ok()) co_return fail(chosen.error());
    result.digest = chosen->value("digest", "");
    result.platform = PlatformName(chosen->value("platform", json::object()));
    if (result.platform.empty()) result.platform = "generic";
    auto path = co_await cache.Get(loop, result.digest,
                                   fetch(registry.Path("manifests/" + result.digest), kAcceptManifests), cancel);
    if (!path.ok()) co_return fail(path.error().Wrap("manifest " + result.digest));
    auto text = ReadFile(*path);
    if (!text.ok()) co_return fail(text.error());
    auto parsed = ParseJson(*text, "manifest " + result.digest);
    if (!parsed.ok()) co_return fail(parsed.error());
    manifest = *parsed;
  }
  if (!manifest.contains("layers") || !manifest["layers"].is_array()) {
    co_return fail(FailedError("manifest " + result.digest + " has no layers"));
  }

  if (::mkdir(dest.c_str(), 0755) != 0) co_return fail(ErrnoError("creating " + dest, errno));
  struct RemoveUnlessKept {
    std::string path;
    ~RemoveUnlessKept() { if (!path.empty()) (void)RemoveTree(path); }
  } guard{dest};
  for (const json& layer : manifest["layers"]) {
    const std::string digest = layer.is_object() ? layer.value("digest", "") : "";
    bool downloaded = false;
    auto blob = co_await cache.Get(loop, digest, fetch(registry.Path("blobs/" + digest), ""), cancel,
                                   &downloaded);
    if (!blob.ok()) co_return fail(blob.error().Wrap("layer " + digest));
    ++result.layers;
    if (downloaded) ++result.layers_downloaded;
    Status unpacked = co_await UnpackLayer(loop, *blob, digest, dest, cancel);
    if (!unpacked.ok()) co_return fail(unpacked.error());
  }
  guard.path.clear();
  co_return result;
}

}  // namespace sr::oci
