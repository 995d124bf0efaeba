// `serve` and `proxy` (the `client` commands are in client_commands.cc).
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>

#include "cli/cli.h"
#include "cli/switches.h"
#include "service/service.h"
#include "util/fd.h"
#include "util/signals.h"
#include "util/tempdir.h"
#include "util/time.h"

namespace sr::cli {

void RegisterClientCommands(CLI::App& app, int& exit_code);

namespace {

// `serve DIR` with a missing DIR creates it, and its missing parents, private (0700).
Status MakeDirs(const std::string& path) {
  for (size_t slash = path.find('/', 1); ; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError(prefix, errno);
    if (slash == std::string::npos) return Ok();
  }
}

struct ServeArgs {
  std::string dir;
  std::string socket;
  std::string retention = "24h";
  bool dir_given = false;
};

int ServeCommand(const ServeArgs& a) {
  service::ServeOptions options;
  if (!a.socket.empty() && a.dir_given) return Fail("give either DIR or --socket, not both", 2);
  if (a.dir_given) {
    if (a.dir.empty()) return Fail("initializing step-runner: invalid empty socket dir", 2);
    if (Status made = MakeDirs(a.dir); !made.ok()) {
      return Fail("initializing step-runner: socket dir: " + made.error().message, 2);
    }
    struct stat st {};
    if (::stat(a.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Fail("initializing step-runner: invalid socket dir " + a.dir, 2);
    }
    options.socket_path = a.dir + "/step-runner.sock";
  } else if (a.socket.empty()) {
    if (Status dir = PrivateSocketDir(DefaultSocketDir()); !dir.ok()) {
      return Fail("initializing step-runner: " + dir.error().message, 2);
    }
    options.socket_path = DefaultSocketPath();
  } else {
    options.socket_path = a.socket;
  }
  auto retention = ParseDuration(a.retention);
  if (!retention.ok()) return Fail("--retention: " + retention.error().message, 2);
  options.retention = *retention;
  const Switches switches = ReadSwitches(ProcessEnv());
  if (Status usable = CheckTempBase(switches); !usable.ok()) return Fail(usable.error().message, 2);
  options.env = switches.env;
  options.temp_base = switches.temp_base;
  options.guardian = !switches.guardian_off;
  options.supervisor = SupervisorOptionsFor(switches);
  Status served = service::Serve(options);
  if (!served.ok()) return Fail("serving step-runner: " + served.error().message, 1);
  return 0;
}

// Byte tunnel between stdin/stdout and the socket (reference.md 5.6). When stdin ends, the
// socket's write side is shut down so the server sees EOF; when the server closes, we are done.
int ProxyCommand(const std::string& path) {
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail(std::string("socket: ") + std::strerror(errno), 1);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Fail("socket path too long: " + path, 1);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Fail("connecting to " + path + ": " + std::strerror(errno), 1);
  }
  SetSignalDisposition(SIGPIPE, SIG_IGN);  // a closed stdout is an error return, not a death
  bool stdin_open = true;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{sock.get(), POLLIN, 0}, {0, POLLIN, 0}};
    int n = ::poll(fds, stdin_open ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(std::string("poll: ") + std::strerror(errno), 1);
    }
    if (fds[0].revents) {
      ssize_t r = ::read(sock.get(), buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return 0;  // the server closed: nothing more can come
      if (!WriteAll(1, std::string_view(buf, static_cast<size_t>(r))).ok()) return 0;
    }
    if (stdin_open && fds[1].revents) {
      ssize_t r = ::read(0, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        stdin_open = false;
        ::shutdown(sock.get(), SHUT_WR);
        continue;
      }
      if (!WriteAll(sock.get(), std::string_view(buf, static_cast<size_t>(r))).ok()) return 0;
    }
  }
}

}  // namespace

void RegisterServiceCommands(CLI::App& app, int& exit_code) {
  auto serve_args = std::make_shared<ServeArgs>();
  CLI::App* serve = app.add_subcommand("serve", "serve the gRPC job API on a unix socket");
  CLI::Option* dir = serve->add_option("dir", serve_args->dir,
                                       "directory of the socket DIR/step-runner.sock, created 0700 if missing "
                                       "(default: $XDG_RUNTIME_DIR, /run/step-runner for root, "
                                       "else $TMPDIR/step-runner-<uid>)");
  serve->add_option("--socket", serve_args->socket, "socket path (instead of DIR)");
  serve->add_option("--retention", serve_args->retention,
                    "forget finished jobs nobody closed after this long (0 = never)")
      ->capture_default_str();
  serve->callback([serve_args, dir, &exit_code] {
    serve_args->dir_given = dir->count() > 0;
    exit_code = ServeCommand(*serve_args);
  });

  auto proxy_socket = std::make_shared<std::string>();
  CLI::App* proxy = app.add_subcommand("proxy", "tunnel stdin/stdout to the server's socket");
  proxy->add_option("--socket", *proxy_socket, "socket path (default: the one of serve without DIR)");
  proxy->callback([proxy_socket, &exit_code] {
    const std::string path = proxy_socket->empty() ? DefaultSocketPath() : *proxy_socket;
    if (Status owner = CheckSocketOwner(path); !owner.ok()) {
      exit_code = Fail(owner.error().message, 1);
      return;
    }
    exit_code = ProxyCommand(path);
  });

  RegisterClientCommands(app, exit_code);
}

}  // namespace sr::cli
