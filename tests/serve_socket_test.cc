// `serve`'s socket file: it appears only once the server listens, and nothing is left under its
// temporary name.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/harness.h"
#include "support/service_client.h"
#include "util/fd.h"

namespace sr::test {
namespace {

// The socket file appears only once the server listens: a client that waits for the file and
// connects at once is never refused. It was, between bind and listen, and gRPC then backs off
// for a second (a CI run's test met it under load). strace holds the server's listen() for a
// while, so that window, if there is one, is wide. Nothing is left under the temporary name.
TEST(ServeSocket, TheFileAppearsOnlyOnceTheServerListens) {
  BecomeSubreaper();
  TestDir dir;
  const std::string sock = dir / "s.sock";
  Child traced({"/usr/bin/strace", "-o", "/dev/null", "-e", "trace=listen", "-e",
                "inject=listen:delay_enter=300ms", Binary(), "serve", "--socket", sock},
               // LeakSanitizer cannot work under ptrace: its report would fail the exit code.
               ServerOptions(dir, {{"ASAN_OPTIONS", "detect_leaks=0"}}));
  struct stat st;
  ASSERT_TRUE(WaitFor([&] { return ::stat(sock.c_str(), &st) == 0; }));
  UniqueFd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  const std::string t = std::to_string(traced.pid());
  pid_t server = 0;
  std::ifstream("/proc/" + t + "/task/" + t + "/children") >> server;
  ASSERT_GT(server, 0);
  ::kill(server, SIGTERM);
  EXPECT_EQ(traced.Wait().exit_code, 0);
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".step-runner-")) << e.path();
  }
  ReapOrphans();
}

}  // namespace
}  // namespace sr::test
