// The proxy's framing without a daemon: a real unix-socket peer on each side checks that
// bytes pass unchanged (pipelined requests, chunked bodies both ways), that a container create
// is relabelled with a correct Content-Length, that a hijacked connection becomes a raw pipe
// whose half-close travels on, and that an oversized create is refused, not passed unlabelled.
// The real daemon is in tests/docker.
#include "docker/proxy.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <future>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "docker/internal.h"
#include "util/tempdir.h"

namespace sr::docker {
namespace {

namespace http = boost::beast::http;

UniqueFd Blocking(UniqueFd fd) {
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{10, 0};  // a safety net: a missing byte fails the test instead of hanging it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void Send(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

// Reads exactly `n` bytes (or up to EOF / the safety timeout).
std::string Recv(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

bool AtEof(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir::Create("sr-proxy-test-", "/tmp").value();
    daemon_ = Blocking(ListenUnix(dir_.path() + "/daemon.sock").value());
    loop_ = EventLoop::Create().value();
    thread_ = std::thread([this] { loop_->Run(); });
    std::promise<void> ready;
    loop_->Post([&] {
      ProxyHooks hooks;
      hooks.create_labels = {{"io.step-runner.job", "j1"}};
      proxy_ = Proxy::Listen(*loop_, dir_.path() + "/job.sock", dir_.path() + "/daemon.sock",
                             std::move(hooks)).value();
      ready.set_value();
    });
    ready.get_future().wait();
  }
  void TearDown() override {
    std::promise<void> gone;
    loop_->Post([&] {
      proxy_.reset();
      gone.set_value();
    });
    gone.get_future().wait();
    loop_->Stop();
    thread_.join();
  }

  // A client connection through the proxy, and the daemon's side of it.
  std::pair<UniqueFd, UniqueFd> Connect() {
    auto client = ConnectUnix(dir_.path() + "/job.sock");
    EXPECT_TRUE(client.ok());
    UniqueFd upstream(::accept4(daemon_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    return {Blocking(std::move(client).value()), Blocking(std::move(upstream))};
  }

  TempDir dir_;
  UniqueFd daemon_;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::unique_ptr<Proxy> proxy_;
};

TEST_F(ProxyTest, PipelinedRequestsAndChunkedBodiesPassUnchanged) {
  auto [client, upstream] = Connect();
  const std::string requests =
      "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
      "POST /v1.41/build?t=x HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
      "HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
  Send(client.get(), requests);
  EXPECT_EQ(Recv(upstream.get(), requests.size()), requests);
  const std::string answers =
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";  // HEAD: a length, no body
  Send(upstream.get(), answers);
  EXPECT_EQ(Recv(client.get(), answers.size()), answers);
  // The client goes: the daemon's side sees the end, then the proxy closes the client's.
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_TRUE(AtEof(upstream.get()));
  upstream.Reset();
  EXPECT_TRUE(AtEof(client.get()));
}

TEST_F(ProxyTest, ContainerCreateGainsTheJobLabels) {
  auto [client, upstream] = Connect();
  const std::string body = R"({"Image":"busybox","Labels":{"keep":"me"}})";
  const std::string first = body.substr(0, 10), rest = body.substr(10);
  std::ostringstream chunked;
  chunked << "POST /v1.41/containers/create?name=web HTTP/1.1\r\nHost: docker\r\n"
          << "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
          << std::hex << first.size() << "\r\n" << first << "\r\n"
          << rest.size() << "\r\n" << rest << "\r\n0\r\n\r\n";
  Send(client.get(), chunked.str());
  // What the daemon gets is one well-formed request with a Content-Length.
  http::request_parser<http::string_body> parser;
  std::string got;
  while (!parser.is_done()) {
    std::string more = Recv(upstream.get(), 1);
    ASSERT_FALSE(more.empty()) << "request incomplete: " << got;
    got += more;
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(got), ec);
    if (!ec || ec != http::error::need_more) {
      ASSERT_FALSE(ec) << ec.message();
    }
    if (!ec) got.clear();
  }
  auto& req = parser.get();
  EXPECT_EQ(req.target(), "/v1.41/containers/create?name=web");
  EXPECT_EQ(req.count(http::field::transfer_encoding), 0u);
  EXPECT_EQ(req[http::field::content_length], std::to_string(req.body().size()));
  EXPECT_EQ(req[http::field::content_type], "application/json");
  auto json = nlohmann::json::parse(req.body());
  EXPECT_EQ(json["Image"], "busybox");
  EXPECT_EQ(json["Labels"]["keep"], "me");
  EXPECT_EQ(json["Labels"]["io.step-runner.job"], "j1");
}

TEST_F(ProxyTest, HijackedConnectionIsARawPipeWithHalfClose) {
  auto [client, upstream] = Connect();
  const std::string attach =
      "POST /v1.41/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n"
      "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
  // stdin bytes right behind the request: not HTTP, and held until the daemon said 101.
  Send(client.get(), attach + "GET not-a-request\r\n");
  EXPECT_EQ(Recv(upstream.get(), attach.size()), attach);
  const std::string upgraded = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
  Send(upstream.get(), upgraded + "output");
  EXPECT_EQ(Recv(client.get(), upgraded.size() + 6), upgraded + "output");
  EXPECT_EQ(Recv(upstream.get(), 19), "GET not-a-request\r\n");
  ::shutdown(client.get(), SHUT_WR);  // stdin's end
  EXPECT_TRUE(AtEof(upstream.get()));
  Send(upstream.get(), "last words");
  upstream.Reset();
  EXPECT_EQ(Recv(client.get(), 10), "last words");
  EXPECT_TRUE(AtEof(client.get()));
}

TEST_F(ProxyTest, OversizedCreateIsRefused) {
  auto [client, upstream] = Connect();
  const size_t size = 5 << 20;
  Send(client.get(), "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: " +
                         std::to_string(size) + "\r\n\r\n");
  std::string body(size, ' ');
  ::send(client.get(), body.data(), body.size(), MSG_NOSIGNAL);  // may stop short: refused
  EXPECT_TRUE(AtEof(client.get()));
  EXPECT_TRUE(AtEof(upstream.get()));  // nothing of it reached the daemon
}

}  // namespace
}  // namespace sr::docker
