// Steps packaged as OCI images (reference.md 1.5 `oci:`, section 4; contract section 6): pull an
// image from a registry into a directory, build one from step directories and push it, copy one
// to another repository.
//
// Everything runs on the caller's event loop: HTTP goes through curl's multi interface driven
// by the loop's fds and timers, and the CPU work of a pull (hashing, unpacking) is cut into
// slices of a few milliseconds that yield to the loop. Packing an artifact for a build, which
// cannot yield, and hashing a large blob run on the loop's helper thread (EventLoop::Offload).
// A cancel removes the transfer from curl at once and the work ends with
// Error::Kind::kCancelled.
//
// Format (as GitLab's dist/steps/step/oci/{fetch,build}): the tag names an OCI image index whose
// entries are image manifests with a `platform`; a manifest's layers are tar archives compressed
// with zstd (gzip and plain tar are accepted too, by sniffing), common layers first. Pulling picks
// the manifest for this host (linux/amd64 on x86-64) first, else the one whose OS is `generic`
// with an empty architecture, and unpacks directories and regular files of every layer, in
// order, into a fresh directory. Every blob is verified against its digest while it streams.
//
// Blobs are kept in a content-addressed cache shared by concurrent jobs and processes:
// <cache_dir>/oci/blobs/sha256/<hex>, written under a per-digest lock file and renamed into place
// complete; a cached blob is re-verified on every use and fetched again when it does not match.
//
// The step environment decides credentials and transport:
//   DOCKER_AUTH_CONFIG          docker config JSON; else $HOME/.docker/config.json (auths[host])
//   STEP_RUNNER_OCI_INSECURE    comma-separated registries (host[:port]) spoken to over plain
//                               HTTP; localhost, 127.0.0.1 and [::1] always are
//   SSL_CERT_FILE, SSL_CERT_DIR the CA certificates HTTPS trusts (instead of the system's), as in Go
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loop/loop.h"
#include "loop/task.h"
#include "util/result.h"
#include "util/time.h"

namespace sr::oci {

/// How oci/ learns of a cancel; the caller adapts its own cancel source (engine/oci_steps.cc).
class CancelToken {
 public:
  virtual ~CancelToken() = default;
  virtual bool requested() const = 0;
  /// Calls `fn` on the loop thread when a cancel comes (at once if one is pending), until the
  /// returned handle is released.
  [[nodiscard]] virtual std::shared_ptr<void> OnCancel(std::function<void()> fn) = 0;
};

/// registry (host[:port]) / repository : tag
struct ImageRef {
  std::string registry;
  std::string repository;
  std::string tag;
  /// "127.0.0.1:5000/steps/echo:1.0"
  std::string ToString() const;
};

/// Parses "host[:port]/repo/path:tag" (or "@sha256:…"). Docker Hub short names ("alpine",
/// "user/img") get the registry "index.docker.io". Errors name the text.
Result<ImageRef> ParseImageRef(const std::string& text);

struct ClientOptions {
  /// The step's environment (see the file comment for the variables read).
  std::map<std::string, std::string> env;
  /// Cache root; blobs go to <cache_dir>/oci. "" = $TMPDIR/step-runner-cache.
  std::string cache_dir;
  /// Bound on connecting to a registry (0 = 10 s).
  Duration connect_timeout{0};
  /// A transfer making no progress for this long fails (0 = 30 s).
  Duration stall_timeout{0};
};

struct PullResult {
  std::string digest;           // the image manifest chosen
  std::string platform;         // its platform, "linux/amd64" or "generic"
  int layers = 0;
  int layers_downloaded = 0;    // the others came from the cache
};

/// Pulls `ref` and unpacks it into `dest`, which must not exist yet (it is created, and removed
/// again on failure). Errors start with `fetching OCI image "<ref>": ` and say what happened:
/// unknown tag, authentication required (naming the registry), digest mismatch, registry
/// unreachable, no manifest for this platform.
Task<Result<PullResult>> Pull(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                              std::string dest, CancelToken* cancel);

/// One source file or directory and where it goes in the image ("step.yml", "/app/bin").
struct Artifact {
  std::string src;
  std::string dst;
};
/// The artifacts of one platform ("linux/amd64"), built into the layers after the common ones.
struct PlatformArtifacts {
  std::string os, architecture, variant;
  std::vector<Artifact> files;
};

struct BuildResult {
  ImageRef ref;
  std::string digest;  // of the image index, "sha256:<hex>"
};

/// Builds an image index with one image per platform (layers: each common artifact, then each
/// of the platform's, one zstd tar per artifact) and pushes it as `ref`. Refuses to overwrite a
/// tag that exists (`image already published: <ref>`), as Go's build step does.
Task<Result<BuildResult>> Build(EventLoop& loop, const ClientOptions& options, ImageRef ref,
                                std::vector<Artifact> common,
                                std::vector<PlatformArtifacts> platforms, CancelToken* cancel);

/// Copies the image (index or manifest, with every blob) `from` to `to`.
Task<Result<std::string>> Copy(EventLoop& loop, const ClientOptions& options, ImageRef from,
                               ImageRef to, CancelToken* cancel);

/// This host's platform in OCI words: {"linux", "amd64"} on x86-64 Linux.
std::pair<std::string, std::string> HostPlatform();

}  // namespace sr::oci
