// HTTP over libcurl's multi interface, driven by the event loop (internal to oci/).
//
// curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
// (CURLMOPT_TIMERFUNCTION); we register those with the EventLoop and hand readiness back through
// curl_multi_socket_action. A request is a coroutine awaiting its transfer's end; a cancel
// removes the transfer from the multi handle on the spot.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loop/loop.h"
#include "loop/task.h"
#include "oci/oci.h"
#include "util/result.h"
#include "util/time.h"

namespace sr::oci {

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, PUT, POST
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // PUT/POST body
  /// Instead of `body`, when set: bytes the caller keeps alive until Send ends (a layer of
  /// hundreds of MB is not copied on the loop thread, once per attempt).
  std::string_view body_view;
  /// Streams the response body (2xx only); returning an error aborts the transfer with it.
  /// Without it the body is buffered, up to max_body bytes.
  std::function<Status(std::string_view)> on_data;
  size_t max_body = 8 << 20;
  bool follow_redirects = true;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // of the last response, names lower-cased
  std::string body;
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpOptions {
  Duration connect_timeout = std::chrono::seconds(10);
  Duration stall_timeout = std::chrono::seconds(30);
  std::string ca_file;  // extra CA bundle (SSL_CERT_FILE)
  std::string ca_dir;   // SSL_CERT_DIR
};

class Http {
 public:
  Http(EventLoop& loop, HttpOptions options);
  ~Http();
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  /// Sends one request. Transport failures (refused, timed out, TLS) are errors naming the URL;
  /// any HTTP status is a response. A cancel ends it with Error::Kind::kCancelled.
  Task<Result<HttpResponse>> Send(HttpRequest request, CancelToken* cancel);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sr::oci
