// Building and pushing a step image, and copying one (see oci.h). The image has the shape Go's
// dist/steps/step/oci/build makes: an OCI index, one OCI manifest per platform with a docker
// image config, one zstd tar layer per artifact, common artifacts first.
#include <ctime>
#include <map>

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "oci/internal.h"
#include "oci/registry.h"
#include "util/json_field.h"

namespace sr::oci {
namespace {

using json = nlohmann::json;

std::string Now() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Encode(const std::string& s) {
  std::string out;
  for (char c : s) out += c == ':' ? std::string("%3A") : std::string(1, c);
  return out;
}

// Uploads one blob unless the repository has it (monolithic upload: POST, then PUT ?digest=).
Task<Status> PushBlob(Registry& reg, const std::string& digest, const std::string& data,
                      CancelToken* cancel) {
  HttpRequest head;
  head.method = "HEAD";
  head.url = reg.Path("blobs/" + digest);
  auto exists = co_await reg.Send(head, cancel);
  if (!exists.ok()) co_return exists.error();
  if (exists->status == 200) co_return Ok();
  HttpRequest start;
  start.method = "POST";
  start.url = reg.Path("blobs/uploads/");
  auto started = co_await reg.Send(start, cancel);
  if (!started.ok()) co_return started.error();
  std::string location = started->Header("location");
  if (started->status != 202 || location.empty()) {
    co_return FailedError("starting the upload of " + digest + ": " + DescribeFailure(*started));
  }
  HttpRequest put;
  put.method = "PUT";
  put.url = location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + Encode(digest);
  put.headers.push_back("Content-Type: application/octet-stream");
  put.body_view = data;  // `data` outlives this coroutine's awaits: no copy of a large layer
  auto done = co_await reg.Send(put, cancel);
  if (!done.ok()) co_return done.error();
  if (done->status != 201) co_return FailedError("uploading " + digest + ": " + DescribeFailure(*done));
  co_return Ok();
}

Task<Status> PutManifest(Registry& reg, const std::string& reference, const std::string& type,
                         const std::string& body, CancelToken* cancel) {
  HttpRequest put;
  put.method = "PUT";
  put.url = reg.Path("manifests/" + reference);
  put.headers.push_back("Content-Type: " + type);
  put.body = body;
  auto done = co_await reg.Send(put, cancel);
  if (!done.ok()) co_return done.error();
  if (done->status != 201) co_return FailedError("putting manifest " + reference + ": " + DescribeFailure(*done));
  co_return Ok();
}

json Descriptor(const std::string& type, size_t size, const std::string& digest) {
  return json{{"mediaType", type}, {"size", size}, {"digest", digest}};
}
json Descriptor(const std::string& type, const std::string& data) {
  return Descriptor(type, data.size(), DigestOf(data));
}

// Blobs above this are hashed off the loop thread; below, the thread hop costs more.
constexpr size_t kInlineHashBytes = size_t{1} << 20;

// The digest of `data`, computed off the loop when it is large (OffLoop). `data` is moved into
// shared ownership for the hash and back when it is done.
Task<Result<std::string>> DigestOfLarge(EventLoop& loop, std::string& data, CancelToken* cancel) {
  if (data.size() <= kInlineHashBytes) co_return DigestOf(data);
  auto shared = std::make_shared<std::string>(std::move(data));
  std::function<Result<std::string>(const StopFlag&)> work = [shared](const StopFlag& stop) {
    return DigestOf(*shared, &stop);
  };
  auto digest = co_await OffLoop<std::string>(loop, cancel, std::move(work));
  if (digest.ok()) data = std::move(*shared);  // the hash is done: nobody else reads it now
  co_return digest;
}

// GETs a manifest (by tag or digest) or a blob into memory; a digest reference is verified.
Task<Result<HttpResponse>> GetVerified(EventLoop& loop, Registry& reg, const std::string& what,
                                       const std::string& ref, CancelToken* cancel) {
  HttpRequest get;
  get.url = reg.Path(what + "/" + ref);
  if (what == "manifests") get.headers.push_back(kAcceptManifests);
  get.max_body = size_t{1} << 30;
  auto got = co_await reg.Send(get, cancel);
  if (!got.ok()) co_return got.error();
  if (got->status != 200) co_return FailedError("GET " + what + "/" + ref + " from " + reg.name() + ": " + DescribeFailure(*got));
  if (ref.rfind("sha256:", 0) == 0) {
    auto digest = co_await DigestOfLarge(loop, got->body, cancel);
    if (!digest.ok()) co_return digest.error();
    if (*digest != ref) co_return FailedError("digest mismatch: " + ref + " arrived as " + *digest);
  }
  co_return got;
}

// Copies one image manifest's blobs, then the manifest (by digest, or by `tag`).
Task<Status> CopyManifest(EventLoop& loop, Registry& from, Registry& to, const HttpResponse& m, const std::string& ref,
                          CancelToken* cancel) {
  const std::string what = "manifest " + ref;
  json doc = json::parse(m.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) co_return FailedError(what + " is not JSON");
  std::vector<std::string> blobs;
  auto config = JsonField<json>(doc, "config", what, json::object());
  if (!config.ok()) co_return config.error();
  if (!config->empty()) {
    auto digest = JsonField<std::string>(*config, "digest", what + " config");
    if (!digest.ok()) co_return digest.error();
    blobs.push_back(*digest);
  }
  auto layers = JsonField<json>(doc, "layers", what, json::array());
  if (!layers.ok()) co_return layers.error();
  for (const json& l : *layers) {
    auto digest = JsonField<std::string>(l, "digest", what + " layers[" + std::to_string(blobs.size()) + "]");
    if (!digest.ok()) co_return digest.error();
    blobs.push_back(*digest);
  }
  for (const std::string& digest : blobs) {
    if (Status ok = CheckDigest(digest); !ok.ok()) co_return ok.error();
    auto blob = co_await GetVerified(loop, from, "blobs", digest, cancel);
    if (!blob.ok()) co_return blob.error();
    Status pushed = co_await PushBlob(to, digest, blob->body, cancel);
    if (!pushed.ok()) co_return pushed.error();
  }
  auto type = JsonField<std::string>(doc, "mediaType", what, m.Header("content-type"));
  if (!type.ok()) co_return type.error();
  co_return co_await PutManifest(to, ref, *type, m.body, cancel);
}

Task<Result<BuildResult>> BuildUnguarded(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                                         std::vector<Artifact> common,
                                         std::vector<PlatformArtifacts> platforms, CancelToken* cancel) {
  auto fail = [&](const Error& e) {
    return e.kind == Error::Kind::kCancelled ? e : e.Wrap("building OCI image \"" + ref.ToString() + "\"");
  };
  Http http(loop, HttpOptionsFor(options));
  Registry reg(http, options, ref.registry, ref.repository, /*push=*/true);
  HttpRequest head;
  head.method = "HEAD";
  head.url = reg.Path("manifests/" + ref.tag);
  head.headers.push_back(kAcceptManifests);
  auto published = co_await reg.Send(head, cancel);
  if (!published.ok()) co_return fail(published.error());
  if (published->status == 200) co_return fail(FailedError("image already published: " + ref.ToString()));

  const std::string created = Now();
  std::map<std::string, PackedLayer> packed;  // by "src\0dst": a common artifact is packed once
  json index = {{"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", json::array()},
                {"annotations", {{"org.opencontainers.image.created", created}}}};
  for (const PlatformArtifacts& platform : platforms) {
    std::vector<Artifact> artifacts = common;
    artifacts.insert(artifacts.end(), platform.files.begin(), platform.files.end());
    json layers = json::array();
    json diff_ids = json::array();
    for (const Artifact& a : artifacts) {
      if (cancel && cancel->requested()) co_return Error{Error::Kind::kCancelled, "cancelled"};
      const std::string key = a.src + '\0' + a.dst;
      if (!packed.count(key)) {
        auto layer = co_await PackLayerOffLoop(loop, a, cancel);
        if (!layer.ok()) co_return fail(layer.error());
        packed[key] = std::move(*layer);
      }
      const PackedLayer& layer = packed[key];
      Status pushed = co_await PushBlob(reg, layer.digest, layer.data, cancel);
      if (!pushed.ok()) co_return fail(pushed.error());
      layers.push_back(Descriptor(kLayerType, layer.data.size(), layer.digest));
      diff_ids.push_back(layer.diff_id);
    }
    const std::string config = json{{"architecture", ""}, {"os", ""}, {"config", json::object()},
                                    {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}.dump();
    Status pushed = co_await PushBlob(reg, DigestOf(config), config, cancel);
    if (!pushed.ok()) co_return fail(pushed.error());
    const std::string manifest =
        json{{"schemaVersion", 2}, {"mediaType", kManifestType},
             {"config", Descriptor(kConfigType, config)}, {"layers", layers},
             {"annotations", {{"org.opencontainers.image.created", created}}}}.dump();
    const std::string digest = DigestOf(manifest);
    Status put = co_await PutManifest(reg, digest, kManifestType, manifest, cancel);
    if (!put.ok()) co_return fail(put.error());
    json entry = Descriptor(kManifestType, manifest);
    entry["platform"] = {{"os", platform.os}, {"architecture", platform.architecture}};
    if (!platform.variant.empty()) entry["platform"]["variant"] = platform.variant;
    index["manifests"].push_back(entry);
  }
  const std::string body = index.dump();
  Status put = co_await PutManifest(reg, ref.tag, kIndexType, body, cancel);
  if (!put.ok()) co_return fail(put.error());
  co_return BuildResult{ref, DigestOf(body)};
}

Task<Result<std::string>> CopyUnguarded(EventLoop& loop, const ClientOptions& options, ImageRef from,
                                        ImageRef to, CancelToken* cancel) {
  auto fail = [&](const Error& e) {
    return e.kind == Error::Kind::kCancelled
               ? e
               : e.Wrap("copying OCI image \"" + from.ToString() + "\" to \"" + to.ToString() + "\"");
  };
  Http http(loop, HttpOptionsFor(options));
  Registry src(http, options, from.registry, from.repository, /*push=*/false);
  Registry dst(http, options, to.registry, to.repository, /*push=*/true);
  auto top = co_await GetVerified(loop, src, "manifests", from.tag, cancel);
  if (!top.ok()) co_return fail(top.error());
  const std::string what = "the manifest of " + from.ToString();
  json doc = json::parse(top->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) co_return fail(FailedError(what + " is not JSON"));
  auto media_type = JsonField<std::string>(doc, "mediaType", what, top->Header("content-type"));
  if (!media_type.ok()) co_return fail(media_type.error());
  const std::string type = *media_type;
  if (type == kIndexType || type == kDockerListType) {
    auto manifests = JsonField<json>(doc, "manifests", what, json::array());
    if (!manifests.ok()) co_return fail(manifests.error());
    int i = 0;
    for (const json& m : *manifests) {
      auto digest = JsonField<std::string>(m, "digest", what + " manifests[" + std::to_string(i++) + "]");
      if (!digest.ok()) co_return fail(digest.error());
      if (Status ok = CheckDigest(*digest); !ok.ok()) co_return fail(ok.error());
      auto child = co_await GetVerified(loop, src, "manifests", *digest, cancel);
      if (!child.ok()) co_return fail(child.error());
      Status copied = co_await CopyManifest(loop, src, dst, *child, *digest, cancel);
      if (!copied.ok()) co_return fail(copied.error());
    }
    Status put = co_await PutManifest(dst, to.tag, type, top->body, cancel);
    if (!put.ok()) co_return fail(put.error());
  } else {
    Status copied = co_await CopyManifest(loop, src, dst, *top, to.tag, cancel);
    if (!copied.ok()) co_return fail(copied.error());
  }
  co_return DigestOf(top->body);
}

}  // namespace

Task<Result<BuildResult>> Build(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                                std::vector<Artifact> common,
                                std::vector<PlatformArtifacts> platforms, CancelToken* cancel) {
  const std::string what = "building OCI image \"" + ref.ToString() + "\"";
  return Guarded(BuildUnguarded(loop, options, std::move(ref), std::move(common), std::move(platforms), cancel),
                 what);
}

Task<Result<std::string>> Copy(EventLoop& loop, const ClientOptions& options, ImageRef from,
                               ImageRef to, CancelToken* cancel) {
  const std::string what = "copying OCI image \"" + from.ToString() + "\" to \"" + to.ToString() + "\"";
  return Guarded(CopyUnguarded(loop, options, std::move(from), std::move(to), cancel), what);
}

}  // namespace sr::oci
