// One repository on one registry, spoken to over the distribution API with authentication
// (internal to oci/).
//
// Requests go out anonymously first. A 401 names the scheme in WWW-Authenticate: `Basic` is
// answered with the user's credentials, `Bearer realm=…,service=…,scope=…` by asking the realm
// for a token (with the credentials when there are any) and retrying with it. The header that
// worked is kept for the following requests.
#pragma once

#include <optional>
#include <string>

#include "oci/http.h"
#include "oci/oci.h"

namespace sr::oci {

inline constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kDockerListType =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerManifestType =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kConfigType = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kLayerType = "application/vnd.gitlab.step.layer.v1.tar+zstd";

struct Credentials {
  std::string username, password;
};

/// The credentials for `registry` in $DOCKER_AUTH_CONFIG (if set and not empty) or else
/// $HOME/.docker/config.json: `auths[<registry>]`, matched with or without a URL scheme and
/// path, `auth` (base64 "user:password") or `username`/`password`. nullopt when none.
Result<std::optional<Credentials>> FindCredentials(const std::map<std::string, std::string>& env,
                                                   const std::string& registry);

/// "http" for localhost, 127.0.0.1, [::1] and registries in STEP_RUNNER_OCI_INSECURE; else "https".
std::string SchemeFor(const std::map<std::string, std::string>& env, const std::string& registry);

class Registry {
 public:
  /// `push` asks bearer tokens for push rights too.
  Registry(Http& http, const ClientOptions& options, std::string registry, std::string repository,
           bool push);

  /// Sends `request`, whose url is a path ("/v2/<repo>/manifests/x") or an absolute URL (an
  /// upload location), with authentication. Transport errors and refused credentials are errors
  /// naming the registry; other HTTP statuses are returned.
  Task<Result<HttpResponse>> Send(HttpRequest request, CancelToken* cancel);

  /// "/v2/<repository>/<what>"
  std::string Path(const std::string& what) const { return "/v2/" + repository_ + "/" + what; }
  const std::string& name() const { return registry_; }
  const std::string& repository() const { return repository_; }

 private:
  Task<Status> Authenticate(const std::string& challenge, CancelToken* cancel);
  Http& http_;
  const ClientOptions& options_;
  std::string registry_, repository_;
  bool push_;
  std::string base_;         // scheme://host
  std::string auth_header_;  // "Authorization: …" once known
  std::optional<std::optional<Credentials>> credentials_;  // looked up on first need
};

/// A registry's error answer in one line: `404 Not Found: MANIFEST_UNKNOWN: manifest unknown`.
std::string DescribeFailure(const HttpResponse& response);

/// The Accept header of a manifest request: OCI index and manifest, and Docker's list and v2.
extern const char* const kAcceptManifests;

/// The HTTP client's options from a pull's or push's: timeouts and $SSL_CERT_FILE/_DIR.
HttpOptions HttpOptionsFor(const ClientOptions& options);

}  // namespace sr::oci
