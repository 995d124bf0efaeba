// Finds where HTTP/1.1 messages begin and end in a byte stream, with Boost.Beast's parser fed
// through its buffer API (no Asio I/O). The proxy forwards the very bytes the parser consumed,
// so a message passes unchanged; the framer only says what the bytes were: request line or
// status, the fields when asked, the body when asked (bounded), and where the message ends.
// Internal to src/docker.
#pragma once

#include <boost/beast/http/basic_parser.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sr::docker {

namespace http = boost::beast::http;

template <bool kRequest>
class HttpFramer final : public http::basic_parser<kRequest> {
 public:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  /// Headers of docker requests can carry registry credentials (X-Registry-Auth, X-Registry-
  /// Config with every registry's login): allow far more than Beast's 8 KiB default.
  static constexpr uint32_t kHeaderLimit = 1 << 20;

  explicit HttpFramer(bool head_response = false) {
    this->header_limit(kHeaderLimit);
    // Bodies stream through; only captured bodies are bounded. (Not boost::none: Boost 1.74
    // compares a content length against the empty optional and reports body_limit.)
    this->body_limit(std::numeric_limits<std::uint64_t>::max());
    this->eager(true);
    if (head_response) this->skip(true);
  }

  /// Asks for the fields and, up to `limit` bytes, the body. Call from the request-line hook
  /// (OnStart) at the latest: fields before it are not recorded.
  void Capture(size_t limit) {
    capture_ = true;
    capture_limit_ = limit;
  }

  /// Feeds bytes; returns how many were consumed (0 with `need_more` set while a header is
  /// incomplete). An error other than need_more makes the stream unusable.
  size_t Put(std::string_view bytes, bool* need_more, std::string* error) {
    error_code ec;
    size_t n = this->put(boost::asio::const_buffer(bytes.data(), bytes.size()), ec);
    *need_more = ec == http::error::need_more;
    if (ec && !*need_more) *error = ec.message();
    return n;
  }

  const std::string& method() const { return method_; }
  const std::string& target() const { return target_; }
  int status() const { return status_; }
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }
  const std::string& body() const { return body_; }
  /// The captured body went past its limit (body() holds the first `limit` bytes).
  bool body_truncated() const { return truncated_; }

  /// Called after the request line / status line, before the fields.
  std::function<void()> on_start;

 private:
  void on_request_impl(http::verb, string_view method, string_view target, int,
                       error_code&) override {
    method_.assign(method.data(), method.size());
    target_.assign(target.data(), target.size());
    if (on_start) on_start();
  }
  void on_response_impl(int code, string_view, int, error_code&) override {
    status_ = code;
    if (on_start) on_start();
  }
  void on_field_impl(http::field, string_view name, string_view value, error_code&) override {
    if (capture_) fields_.emplace_back(std::string(name), std::string(value));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&, error_code&) override {}
  size_t on_body_impl(string_view body, error_code&) override {
    Keep(body);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    Keep(body);
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  void Keep(string_view body) {
    if (!capture_) return;
    size_t room = capture_limit_ - std::min(capture_limit_, body_.size());
    if (body.size() > room) truncated_ = true;
    body_.append(body.data(), std::min(room, body.size()));
  }

  std::string method_, target_;
  int status_ = 0;
  bool capture_ = false, truncated_ = false;
  size_t capture_limit_ = 0;
  std::vector<std::pair<std::string, std::string>> fields_;
  std::string body_;
};

}  // namespace sr::docker
