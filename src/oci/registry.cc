#include "oci/registry.h"

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "util/fd.h"
#include "util/json_field.h"

namespace sr::oci {
namespace {

using json = nlohmann::json;

std::string Get(const std::map<std::string, std::string>& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? "" : it->second;
}

// "https://reg.example:5000/v1/" → "reg.example:5000"
std::string HostOf(std::string key) {
  if (auto p = key.find("://"); p != std::string::npos) key = key.substr(p + 3);
  if (auto p = key.find('/'); p != std::string::npos) key = key.substr(0, p);
  return key;
}

// The parameters of a `Bearer realm="…",service="…"` challenge.
std::map<std::string, std::string> ChallengeParams(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t i = text.find(' ');
  while (i != std::string::npos && i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    size_t eq = text.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = text.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < text.size() && text[i] == '"') {
      size_t end = text.find('"', i + 1);
      value = text.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
      i = end == std::string::npos ? text.size() : end + 1;
    } else {
      size_t end = text.find(',', i);
      value = text.substr(i, end == std::string::npos ? std::string::npos : end - i);
      i = end;
    }
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out[key] = value;
  }
  return out;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

Result<std::optional<Credentials>> FindCredentials(const std::map<std::string, std::string>& env,
                                                   const std::string& registry) {
  std::string text = Get(env, "DOCKER_AUTH_CONFIG");
  std::string source = "$DOCKER_AUTH_CONFIG";
  if (text.empty()) {
    std::string home = Get(env, "HOME");
    if (home.empty()) return std::optional<Credentials>();
    source = home + "/.docker/config.json";
    auto file = ReadFile(source);
    if (!file.ok()) return std::optional<Credentials>();  // no config file: anonymous
    text = *file;
  }
  json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return FailedError(source + ": not a JSON object");
  }
  if (!config.contains("auths") || !config["auths"].is_object()) return std::optional<Credentials>();
  for (const auto& [key, entry] : config["auths"].items()) {
    std::string host = HostOf(key);
    bool hub = registry == "index.docker.io" && (host == "index.docker.io" || host == "docker.io");
    if (host != registry && !hub) continue;
    const std::string what = source + ": auths[\"" + key + "\"]";
    auto auth = JsonField<std::string>(entry, "auth", what);
    if (!auth.ok()) return auth.error();
    Credentials c;
    if (!auth->empty()) {
      auto decoded = DecodeBase64(*auth);
      auto colon = decoded.ok() ? decoded->find(':') : std::string::npos;
      if (colon == std::string::npos) {
        return FailedError(source + ": auths[\"" + key + "\"].auth is not base64 of user:password");
      }
      c.username = decoded->substr(0, colon);
      c.password = decoded->substr(colon + 1);
    } else {
      auto username = JsonField<std::string>(entry, "username", what);
      if (!username.ok()) return username.error();
      auto password = JsonField<std::string>(entry, "password", what);
      if (!password.ok()) return password.error();
      c.username = *username;
      c.password = *password;
    }
    if (!c.username.empty()) return std::optional<Credentials>(c);
  }
  return std::optional<Credentials>();
}

std::string SchemeFor(const std::map<std::string, std::string>& env, const std::string& registry) {
  std::string host = registry;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "127.0.0.1" || host == "[::1]") return "http";
  std::string list = Get(env, "STEP_RUNNER_OCI_INSECURE");
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    item.erase(0, item.find_first_not_of(' '));
    if (!item.empty() && (item == registry || item == host)) return "http";
    start = end + 1;
  }
  return "https";
}

std::string DescribeFailure(const HttpResponse& r) {
  std::string out = std::to_string(r.status);
  json body = json::parse(r.body, nullptr, false);
  if (!body.is_discarded() && body.is_object() && body.contains("errors") &&
      body["errors"].is_array() && !body["errors"].empty() && body["errors"][0].is_object()) {
    // Only a description: a malformed body is said as such rather than failing on its own.
    const json& e = body["errors"][0];
    auto code = JsonField<std::string>(e, "code", "the registry's error body errors[0]");
    auto message = JsonField<std::string>(e, "message", "the registry's error body errors[0]");
    if (!code.ok()) return out + " (" + code.error().message + ")";
    if (!message.ok()) return out + " (" + message.error().message + ")";
    out += ": " + *code + ": " + *message;
  }
  return out;
}

Registry::Registry(Http& http, const ClientOptions& options, std::string registry,
                   std::string repository, bool push)
    : http_(http), options_(options), registry_(std::move(registry)),
      repository_(std::move(repository)), push_(push) {
  base_ = SchemeFor(options_.env, registry_) + "://" + registry_;
}

Task<Result<HttpResponse>> Registry::Send(HttpRequest request, CancelToken* cancel) {
  if (request.url.rfind("http://", 0) != 0 && request.url.rfind("https://", 0) != 0) {
    request.url = base_ + request.url;
  }
  for (int attempt = 0;; ++attempt) {
    HttpRequest r = request;
    if (!auth_header_.empty()) r.headers.push_back(auth_header_);
    auto response = co_await http_.Send(std::move(r), cancel);
    if (!response.ok()) {
      if (response.error().kind == Error::Kind::kCancelled) co_return response.error();
      co_return response.error().Wrap("registry " + registry_);
    }
    if (response->status != 401) co_return response;
    const std::string challenge = response->Header("www-authenticate");
    if (attempt == 0 && !challenge.empty()) {
      Status ok = co_await Authenticate(challenge, cancel);
      if (!ok.ok()) co_return ok.error();
      continue;
    }
    if (!credentials_ || !*credentials_) {
      co_return FailedError("registry " + registry_ +
                            " requires authentication (401 Unauthorized), and there are no "
                            "credentials for it in $DOCKER_AUTH_CONFIG or ~/.docker/config.json");
    }
    co_return FailedError("registry " + registry_ + " refused the credentials of user \"" +
                          (*credentials_)->username + "\" (401 Unauthorized)");
  }
}

Task<Status> Registry::Authenticate(const std::string& challenge, CancelToken* cancel) {
  if (!credentials_) {
    auto found = FindCredentials(options_.env, registry_);
    if (!found.ok()) co_return found.error();
    credentials_ = *found;
  }
  const std::optional<Credentials>& creds = *credentials_;
  std::string basic;
  if (creds) basic = "Authorization: Basic " + Base64(creds->username + ":" + creds->password);
  std::string scheme = challenge.substr(0, challenge.find(' '));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "basic") {
    auth_header_ = basic;  // empty without credentials: the retry gets the 401 again
    co_return Ok();
  }
  if (scheme != "bearer") co_return FailedError("registry " + registry_ + ": unsupported authentication \"" + challenge + "\"");
  auto params = ChallengeParams(challenge);
  const std::string realm = params["realm"];
  if (realm.empty()) co_return FailedError("registry " + registry_ + ": bearer challenge without realm");
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!params["service"].empty()) url += "service=" + UrlEncode(params["service"]) + "&";
  url += "scope=" + UrlEncode("repository:" + repository_ + (push_ ? ":pull,push" : ":pull"));
  HttpRequest token_request;
  token_request.url = url;
  if (!basic.empty()) token_request.headers.push_back(basic);
  auto response = co_await http_.Send(std::move(token_request), cancel);
  if (!response.ok()) {
    if (response.error().kind == Error::Kind::kCancelled) co_return response.error();
    co_return response.error().Wrap("registry " + registry_ + ": token service");
  }
  if (response->status == 401 || response->status == 403) {
    if (!creds) {
      co_return FailedError("registry " + registry_ + " requires authentication (token service: " +
                            std::to_string(response->status) + "), and there are no credentials "
                            "for it in $DOCKER_AUTH_CONFIG or ~/.docker/config.json");
    }
    co_return FailedError("registry " + registry_ + " refused the credentials of user \"" +
                          creds->username + "\" (token service: " + std::to_string(response->status) + ")");
  }
  if (response->status != 200) {
    co_return FailedError("registry " + registry_ + ": token service: " + DescribeFailure(*response));
  }
  json body = json::parse(response->body, nullptr, false);
  std::string token;
  if (!body.is_discarded() && body.is_object()) {
    const std::string what = "registry " + registry_ + ": token service reply";
    auto got = JsonField<std::string>(body, "token", what);
    if (got.ok() && got->empty()) got = JsonField<std::string>(body, "access_token", what);
    if (!got.ok()) co_return got.error();
    token = *got;
  }
  if (token.empty()) co_return FailedError("registry " + registry_ + ": token service sent no token");
  auth_header_ = "Authorization: Bearer " + token;
  co_return Ok();
}

const char* const kAcceptManifests =
    "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

HttpOptions HttpOptionsFor(const ClientOptions& options) {
  HttpOptions h;
  if (options.connect_timeout.count() > 0) h.connect_timeout = options.connect_timeout;
  if (options.stall_timeout.count() > 0) h.stall_timeout = options.stall_timeout;
  if (auto it = options.env.find("SSL_CERT_FILE"); it != options.env.end()) h.ca_file = it->second;
  if (auto it = options.env.find("SSL_CERT_DIR"); it != options.env.end()) h.ca_dir = it->second;
  return h;
}

}  // namespace sr::oci
