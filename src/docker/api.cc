// Unix sockets and one-shot Docker API calls on the event loop.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cerrno>
#include <cstring>
#include <optional>

#include "docker/internal.h"
#include "util/signals.h"

namespace sr::docker {
namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return InvalidError("socket path too long (" + std::to_string(path.size()) + " bytes): " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Answers bigger than this are not something the stop or the cleanup asked for.
constexpr uint64_t kMaxApiBody = 64 << 20;

}  // namespace

Result<UniqueFd> ConnectUnix(const std::string& path) {
  SR_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError("connecting to " + path, errno);
  }
  return fd;
}

Result<UniqueFd> ListenUnix(const std::string& path) {
  SR_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  // The socket file takes the umask: make it 0600 from the start, not after a window.
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::umask(old);
  if (rc != 0) return ErrnoError("binding " + path, err);
  if (::listen(fd.get(), 128) != 0) return ErrnoError("listening on " + path, errno);
  return fd;
}

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string NormalizeSignal(const std::string& docker_signal, int* signo) {
  auto parsed = ParseSignal(docker_signal.empty() ? "SIGTERM" : docker_signal);
  *signo = parsed.ok() ? *parsed : 0;
  return parsed.ok() ? SignalName(*parsed) : docker_signal;
}

class ApiRequest : public std::enable_shared_from_this<ApiRequest> {
 public:
  ApiRequest(EventLoop& loop, ApiDone done) : loop_(loop), done_(std::move(done)) {
    parser_.body_limit(kMaxApiBody);
    parser_.eager(true);
  }

  void Start(const std::string& socket, const std::string& method, const std::string& target,
             const std::string& body) {
    out_ = method + " " + target + " HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n";
    if (!body.empty()) out_ += "Content-Type: application/json\r\n";
    out_ += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    if (method == "HEAD") parser_.skip(true);
    auto fd = ConnectUnix(socket);
    if (!fd.ok()) return FailLater(fd.error());
    fd_ = std::move(*fd);
    auto self = shared_from_this();
    auto watch = loop_.Watch(fd_.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             [self](uint32_t) { self->Pump(); });
    if (!watch.ok()) return FailLater(watch.error());
    watch_ = *watch;
  }

  void Abort() {
    done_ = nullptr;
    Close();
  }

 private:
  void FailLater(Error e) {
    auto self = shared_from_this();
    loop_.After(Duration(0), [self, e] { self->Finish(e); });
  }

  void Pump() {
    while (sent_ < out_.size()) {
      ssize_t n = ::send(fd_.get(), out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL);
      if (n > 0) {
        sent_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      return Finish(ErrnoError("docker API: send", errno));
    }
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0) return Finish(ErrnoError("docker API: read", errno));
      boost::beast::error_code ec;
      if (n == 0) {
        parser_.put_eof(ec);
        if (ec || !parser_.is_done()) {
          return Finish(InternalError("docker API: the daemon closed the connection mid-answer"));
        }
        break;
      }
      in_.append(buf, static_cast<size_t>(n));
      size_t used = parser_.put(boost::asio::const_buffer(in_.data(), in_.size()), ec);
      in_.erase(0, used);
      if (ec && ec != boost::beast::http::error::need_more) {
        return Finish(InternalError("docker API: bad answer: " + ec.message()));
      }
      if (parser_.is_done()) break;
    }
    ApiResponse r;
    r.status = static_cast<int>(parser_.get().result_int());
    r.body = std::move(parser_.get().body());
    Finish(std::move(r));
  }

  void Finish(Result<ApiResponse> r) {
    Close();
    auto done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(r));
  }

  void Close() {
    if (watch_) loop_.Unwatch(watch_);  // drops the loop's reference to this request
    watch_ = 0;
    fd_.Reset();
  }

  EventLoop& loop_;
  ApiDone done_;
  UniqueFd fd_;
  EventLoop::WatchId watch_ = 0;
  std::string out_, in_;
  size_t sent_ = 0;
  boost::beast::http::response_parser<boost::beast::http::string_body> parser_;
};

std::shared_ptr<ApiRequest> ApiCall(EventLoop& loop, const std::string& socket,
                                    const std::string& method, const std::string& target,
                                    std::string body, ApiDone done) {
  auto request = std::make_shared<ApiRequest>(loop, std::move(done));
  request->Start(socket, method, target, body);
  return request;
}

void Abort(const std::shared_ptr<ApiRequest>& request) {
  if (request) request->Abort();
}

}  // namespace sr::docker
