// Serve(): signals, event loop, supervisor, socket, gRPC server, and the shutdown sequence.
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "docker/docker.h"
#include "service/job_service.h"
#include "service/listener.h"
#include "service/service.h"
#include "supervisor/runner_start.h"
#include "util/fd.h"
#include "util/signals.h"

namespace sr::service {
namespace {

// A socket file with a listener is an error; one without (a server that died) is removed.
Status PrepareSocket(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return InvalidError("socket path too long (" + std::to_string(path.size()) + " bytes): " + path);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("opening socket " + path, errno);
  }
  if (!S_ISSOCK(st.st_mode)) return InvalidError("opening socket " + path + ": exists and is not a socket");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    return InvalidError("opening socket " + path + ": another server is listening on it");
  }
  if (errno != ECONNREFUSED) return ErrnoError("opening socket " + path, errno);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("removing stale socket " + path, errno);
  }
  return Ok();
}

}  // namespace

Status Serve(const ServeOptions& options) {
  std::error_code ec;
  const std::string path = std::filesystem::absolute(options.socket_path, ec).lexically_normal().string();
  if (ec) return InternalError("socket path " + options.socket_path + ": " + ec.message());

  // 1. Signals: blocked in every thread (gRPC's inherit the mask) and consumed on the loop.
  // A closed terminal (SIGHUP) and SIGQUIT shut down gracefully, like SIGTERM and SIGINT.
  // Before the start's sweep of a dead runner's leftovers, which can take a while: a SIGTERM
  // meanwhile waits for the loop (a clean shutdown) instead of killing the server half-way.
  BlockSignals({SIGPIPE});
  SR_ASSIGN_OR_RETURN(UniqueFd sigfd, BlockedSignalFd({SIGINT, SIGTERM, SIGHUP, SIGQUIT}));
  SR_RETURN_IF_ERROR(PrepareRunner(options.temp_base, options.guardian));

  // 2. The loop and the supervisor, on this thread, before gRPC creates any thread.
  SR_ASSIGN_OR_RETURN(auto loop, EventLoop::Create());
  SR_ASSIGN_OR_RETURN(auto supervisor, Supervisor::Create(*loop, options.supervisor));
  if (const auto& debug = options.supervisor.debug_log) {
    // Contract 7.4 allows no request to hold the loop for more than 100 ms; say when one did.
    loop->ReportBusyTurns(std::chrono::milliseconds(20), [debug](Duration busy, Duration cpu) {
      auto ms = [](Duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
      };
      debug("event loop: one turn took " + ms(busy) + " ms (" + ms(cpu) + " ms of its CPU time)");
    });
  }

  // 3. The socket and the server.
  SR_RETURN_IF_ERROR(PrepareSocket(path));
  JobService service(*loop, *supervisor, options.env, options.temp_base, options.retention,
                     options.shutdown_deadline);
  // The socket is ours, not gRPC's: its accept loop survives a full fd table (listener.h).
  SR_ASSIGN_OR_RETURN(auto listener, Listener::Open(*loop, path));
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    ::unlink(path.c_str());
    return InternalError("serving step-runner: could not start the gRPC server on " + path);
  }
  if (Status s = listener->Start(server.get()); !s.ok()) {
    server->Shutdown(std::chrono::system_clock::now());
    ::unlink(path.c_str());
    return s;
  }
  std::fprintf(stderr, "step-runner: listening on unix:%s (%s)\n", path.c_str(),
               supervisor->mechanism().c_str());

  // Containers and networks a killed runner left behind go now (contract 7.1 and 9), in the
  // background.
  if (auto daemon = docker::DaemonSocket(options.env)) {
    docker::RemoveDeadInstanceLeftovers(*loop, *daemon, [](auto removed) {
      if (!removed.ok() || removed->empty()) return;
      std::fprintf(stderr, "step-runner: %s\n", removed->Line().c_str());
    });
  }

  // 4. Run until a signal; then drain jobs and log streams on the loop. Server::Shutdown runs
  //    on a helper thread because reactors it cancels still need the loop to finish. Nothing is
  //    left to wait for by then, and an idle client connection would hold a graceful shutdown
  //    until its deadline, so it cancels whatever remains at once.
  std::thread shutdown_thread;
  auto drained = [&] {
    std::fprintf(stderr, "step-runner: every job and log stream has ended; stopping the server\n");
    listener->Close();
    shutdown_thread = std::thread([&] {
      server->Shutdown(std::chrono::system_clock::now());
      loop->Post([&] { loop->Stop(); });
    });
  };
  int seen = 0;
  auto watch = loop->Watch(sigfd.get(), EPOLLIN, [&](uint32_t) {
    signalfd_siginfo info;
    while (::read(sigfd.get(), &info, sizeof info) == sizeof info) {
      std::string name = SignalName(static_cast<int>(info.ssi_signo));
      if (++seen == 1) {
        std::fprintf(stderr,
                     "step-runner: received '%s' signal; shutting down (cancelling running jobs; "
                     "send it again to kill them now)\n",
                     name.c_str());
      } else {
        std::fprintf(stderr, "step-runner: received '%s' again: killing every job now\n",
                     name.c_str());
      }
      service.BeginShutdown(drained);
    }
  });
  if (!watch.ok()) return watch.error();
  loop->Run();
  if (shutdown_thread.joinable()) shutdown_thread.join();
  loop->Unwatch(*watch);
  server.reset();
  // Reactors freed by gRPC during the shutdown posted their last callbacks: run them.
  loop->Post([&] { loop->Stop(); });
  loop->Run();
  supervisor->KillAll();
  ::unlink(path.c_str());
  return Ok();
}

}  // namespace sr::service
