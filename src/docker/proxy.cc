#include "docker/proxy.h"

#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "docker/http_framer.h"
#include "docker/internal.h"
#include "docker/routes.h"

namespace sr::docker {
namespace {

constexpr size_t kReadChunk = 64 << 10;
// Stop reading a side while this much is waiting to be written to the other: memory per
// connection stays bounded whatever the stream's length.
constexpr size_t kMaxPending = 256 << 10;
// A container create's JSON is a few KiB; one past this is refused rather than buffered.
constexpr size_t kMaxCreateBody = 4 << 20;
constexpr size_t kMaxNetworkAnswer = 64 << 10;
// Bytes moved per connection before other connections and timers get their turn.
constexpr int kRoundsPerTurn = 16;

bool HeaderIs(const std::string& a, const char* b) { return ::strcasecmp(a.c_str(), b) == 0; }

// One direction of a connection.
struct Flow {
  int src = -1, dst = -1;
  std::string in;           // read, not yet framed
  std::string out;          // framed, not yet written
  size_t out_off = 0;
  bool src_eof = false, dst_shut = false;
  bool raw = false;         // hijacked: no more framing
  // Edge-triggered readiness: cleared by a short read or write (the kernel buffer was drained
  // or filled, and the next change brings a new edge), set again by epoll. Saves the syscall
  // that would only answer EAGAIN.
  bool src_ready = true, dst_ready = true;
  bool src_hup = false;  // the peer's end was seen: read on until the 0, short reads or not
  size_t pending() const { return out.size() - out_off; }
};

}  // namespace

class Proxy::Connection {
 public:
  Connection(Proxy& proxy, uint64_t id, UniqueFd client, UniqueFd upstream)
      : proxy_(proxy), id_(id), client_(std::move(client)), upstream_(std::move(upstream)) {
    up_.src = down_.dst = client_.get();
    up_.dst = down_.src = upstream_.get();
  }
  ~Connection() {
    proxy_.loop_.Unwatch(client_watch_);
    proxy_.loop_.Unwatch(upstream_watch_);
  }

  Status Watch() {
    const uint32_t ev = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    SR_ASSIGN_OR_RETURN(client_watch_, proxy_.loop_.Watch(client_.get(), ev, Callback(true)));
    SR_ASSIGN_OR_RETURN(upstream_watch_, proxy_.loop_.Watch(upstream_.get(), ev, Callback(false)));
    return Ok();
  }

 private:
  struct Sent {
    bool head = false, may_hijack = false, network_create = false;
  };

  EventLoop::FdCallback Callback(bool client) {
    Proxy* proxy = &proxy_;
    uint64_t id = id_;
    return [proxy, id, client](uint32_t events) {
      auto it = proxy->connections_.find(id);
      if (it == proxy->connections_.end()) return;
      Connection& c = *it->second;
      Flow& reads = client ? c.up_ : c.down_;   // this fd is their source
      Flow& writes = client ? c.down_ : c.up_;  // and their destination
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) reads.src_ready = true;
      if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) reads.src_hup = true;
      if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writes.dst_ready = true;
      Turn(proxy, id);
    };
  }

  // Looks the connection up by id: a timer may outlive it.
  static void Turn(Proxy* proxy, uint64_t id) {
    auto it = proxy->connections_.find(id);
    if (it == proxy->connections_.end()) return;
    Connection& c = *it->second;
    c.turn_scheduled_ = false;
    c.Pump();
    if (c.finished_) proxy->Remove(id);  // last use of `c`
  }

  // Edge-triggered: move bytes until neither side can go on, so no edge is lost. A very busy
  // connection yields after kRoundsPerTurn rounds and continues on the next loop turn.
  void Pump() {
    for (int round = 0; !finished_; ++round) {
      if (round == kRoundsPerTurn) {
        if (!turn_scheduled_) {
          turn_scheduled_ = true;
          Proxy* proxy = &proxy_;
          uint64_t id = id_;
          proxy_.loop_.After(Duration(0), [proxy, id] { Turn(proxy, id); });
        }
        return;
      }
      bool moved = Move(up_, true);
      moved = Move(down_, false) || moved;
      if (!moved) break;
    }
    if (up_.dst_shut && down_.dst_shut) finished_ = true;
  }

  bool Move(Flow& f, bool requests) {
    bool moved = false;
    if (!f.in.empty() && !(requests && paused_)) moved = Frame(f, requests) || moved;
    char buf[kReadChunk];
    while (!finished_ && f.src_ready && !f.src_eof && f.pending() < kMaxPending &&
           !(requests && paused_) && f.in.size() < kReadChunk + HttpFramer<true>::kHeaderLimit) {
      ssize_t n = ::read(f.src, buf, sizeof buf);
      if (n > 0) {
        if (static_cast<size_t>(n) < sizeof buf && !f.src_hup) f.src_ready = false;
        f.in.append(buf, static_cast<size_t>(n));
        Frame(f, requests);
        moved = true;
      } else if (n == 0) {
        f.src_eof = true;
        moved = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN) {
        f.src_ready = false;
        break;
      } else {
        return Fail();
      }
    }
    while (!finished_ && f.dst_ready && f.pending() > 0) {
      ssize_t n = ::send(f.dst, f.out.data() + f.out_off, f.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        if (static_cast<size_t>(n) < f.pending()) f.dst_ready = false;
        f.out_off += static_cast<size_t>(n);
        moved = true;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        f.dst_ready = false;
        break;
      } else {
        return Fail();
      }
    }
    if (f.pending() == 0) {
      f.out.clear();
      f.out_off = 0;
    }
    // Half-close travels on (stdin's end in `docker run -i`), once everything before it did.
    const bool waiting = requests && paused_ && !f.in.empty();
    if (f.src_eof && f.pending() == 0 && !f.dst_shut && !waiting && !finished_) {
      ::shutdown(f.dst, SHUT_WR);
      f.dst_shut = true;
      moved = true;
    }
    return moved;
  }

  bool Fail() {
    finished_ = true;
    return true;
  }

  bool Frame(Flow& f, bool requests) {
    if (f.raw) {
      f.out += f.in;
      f.in.clear();
      return true;
    }
    return requests ? FrameRequests() : FrameResponses();
  }

  bool FrameRequests() {
    bool moved = false;
    while (!up_.in.empty() && !up_.raw && !paused_ && !finished_) {
      if (!request_) {
        request_.emplace();
        rewrite_ = false;
        held_.clear();
        request_->on_start = [this] {
          // Networks carry the labels too: a dead runner's are found by them (instance.cc).
          const std::string path = PathOf(request_->target());
          if (IsContainerCreate(request_->method(), path) || IsNetworkCreate(request_->method(), path)) {
            rewrite_ = true;
            request_->Capture(kMaxCreateBody);
          }
        };
      }
      bool need_more = false;
      std::string error;
      const size_t n = request_->Put(up_.in, &need_more, &error);
      if (!error.empty()) return Fail();
      if (rewrite_) {
        held_.append(up_.in, 0, n);
      } else {
        up_.out.append(up_.in, 0, n);
      }
      up_.in.erase(0, n);
      moved = moved || n > 0;
      if (request_->is_done()) {
        FinishRequest();
      } else if (need_more || n == 0) {
        break;
      }
    }
    return moved;
  }

  void FinishRequest() {
    const std::string path = PathOf(request_->target());
    if (rewrite_) {
      if (request_->body_truncated()) {
        Fail();  // a create body over 4 MiB: refused, never passed on unlabelled
        return;
      }
      up_.out += Relabelled(*request_, held_);
      if (proxy_.hooks_.container_create && IsContainerCreate(request_->method(), path)) {
        proxy_.hooks_.container_create();
      }
    }
    Sent s;
    s.head = request_->method() == "HEAD";
    s.may_hijack = request_->upgrade() || MayHijack(path);
    s.network_create = IsNetworkCreate(request_->method(), path);
    sent_.push_back(s);
    // After a request that may be hijacked, the client's next bytes are either a stream (stdin)
    // or a new request: which one, the daemon's answer says. Wait for it.
    if (s.may_hijack) paused_ = true;
    request_.reset();
  }

  // The create request with the job's labels in its body (and a new Content-Length). A body
  // that is not a JSON object goes on unchanged: the daemon refuses it.
  std::string Relabelled(const HttpFramer<true>& req, const std::string& original) {
    nlohmann::json body = nlohmann::json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) return original;
    nlohmann::json& labels = body["Labels"];
    if (!labels.is_object()) labels = nlohmann::json::object();
    for (const auto& [k, v] : proxy_.hooks_.create_labels) labels[k] = v;
    const std::string text = body.dump();
    std::string out = req.method() + " " + req.target() + " HTTP/1.1\r\n";
    for (const auto& [name, value] : req.fields()) {
      if (HeaderIs(name, "Content-Length") || HeaderIs(name, "Transfer-Encoding")) continue;
      out += name + ": " + value + "\r\n";
    }
    out += "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n" + text;
    return out;
  }

  bool FrameResponses() {
    bool moved = false;
    while (!down_.in.empty() && !down_.raw && !finished_) {
      const Sent sent = sent_.empty() ? Sent{} : sent_.front();
      if (!response_) {
        response_.emplace(sent.head);
        if (sent.may_hijack) response_->Capture(0);
        if (sent.network_create) response_->Capture(kMaxNetworkAnswer);
        header_seen_ = false;
      }
      bool need_more = false;
      std::string error;
      const size_t n = response_->Put(down_.in, &need_more, &error);
      if (!error.empty()) return Fail();
      down_.out.append(down_.in, 0, n);
      down_.in.erase(0, n);
      moved = moved || n > 0;
      if (response_->is_header_done() && !header_seen_) {
        header_seen_ = true;
        if (sent.may_hijack && Hijacked(*response_)) {
          // Both ways are a raw stream from here on; whatever follows is passed as is.
          down_.raw = up_.raw = true;
          paused_ = false;
          response_.reset();
          if (!sent_.empty()) sent_.pop_front();
          down_.out += down_.in;
          down_.in.clear();
          up_.out += up_.in;
          up_.in.clear();
          return true;
        }
      }
      if (response_->is_done()) {
        const int status = response_->status();
        // An interim answer (100 Continue) comes before the real one.
        if (status >= 200 || status == 101) {
          if (sent.network_create && status == 201) NoteNetwork(response_->body());
          if (sent.may_hijack) paused_ = false;  // answered without a hijack: HTTP goes on
          if (!sent_.empty()) sent_.pop_front();
        }
        response_.reset();
      } else if (need_more || n == 0) {
        break;
      }
    }
    return moved;
  }

  static bool Hijacked(const HttpFramer<false>& r) {
    if (r.status() == 101) return true;
    if (r.status() < 200 || r.status() >= 300) return false;
    for (const auto& [name, value] : r.fields()) {
      if (HeaderIs(name, "Content-Type") && value.find("vnd.docker.") != std::string::npos &&
          value.find("-stream") != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  void NoteNetwork(const std::string& body) {
    auto v = nlohmann::json::parse(body, nullptr, false);
    if (v.is_object() && v.contains("Id") && v["Id"].is_string() && proxy_.hooks_.network_created) {
      proxy_.hooks_.network_created(v["Id"].get<std::string>());
    }
  }

  Proxy& proxy_;
  const uint64_t id_;
  UniqueFd client_, upstream_;
  EventLoop::WatchId client_watch_ = 0, upstream_watch_ = 0;
  Flow up_, down_;  // client → daemon, daemon → client
  std::optional<HttpFramer<true>> request_;
  std::optional<HttpFramer<false>> response_;
  std::deque<Sent> sent_;  // requests whose answers have not been framed yet
  std::string held_;       // a create request's bytes, held until it is relabelled
  bool rewrite_ = false, paused_ = false, header_seen_ = false;
  bool finished_ = false, turn_scheduled_ = false;
};

Proxy::Proxy(EventLoop& loop, std::string listen_path, std::string daemon_path, ProxyHooks hooks)
    : loop_(loop),
      listen_path_(std::move(listen_path)),
      daemon_path_(std::move(daemon_path)),
      hooks_(std::move(hooks)) {}

Result<std::unique_ptr<Proxy>> Proxy::Listen(EventLoop& loop, std::string listen_path,
                                             std::string daemon_path, ProxyHooks hooks) {
  std::unique_ptr<Proxy> proxy(
      new Proxy(loop, std::move(listen_path), std::move(daemon_path), std::move(hooks)));
  SR_ASSIGN_OR_RETURN(proxy->listener_, ListenUnix(proxy->listen_path_));
  Proxy* raw = proxy.get();
  SR_ASSIGN_OR_RETURN(proxy->listen_watch_,
                      loop.Watch(proxy->listener_.get(), EPOLLIN, [raw](uint32_t) { raw->Accept(); }));
  return proxy;
}

Proxy::~Proxy() {
  Shutdown();
  ::unlink(listen_path_.c_str());
}

void Proxy::Shutdown() {
  if (listen_watch_) loop_.Unwatch(listen_watch_);
  listen_watch_ = 0;
  listener_.Reset();
  connections_.clear();
}

void Proxy::Accept() {
  for (;;) {
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!client.valid()) return;  // EAGAIN, or out of fds: the client sees its connect fail
    auto upstream = ConnectUnix(daemon_path_);
    if (!upstream.ok()) continue;  // closing the client tells it the daemon is unreachable
    const uint64_t id = next_id_++;
    auto c = std::make_unique<Connection>(*this, id, std::move(client), std::move(*upstream));
    Connection* raw = c.get();
    connections_.emplace(id, std::move(c));
    if (!raw->Watch().ok()) connections_.erase(id);
  }
}

void Proxy::Remove(uint64_t id) { connections_.erase(id); }

}  // namespace sr::docker
