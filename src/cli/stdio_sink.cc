#include "cli/stdio_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace sr::cli {
namespace {

constexpr int kPipeSize = 1 << 20;

// A second, non-blocking open file description of `fd`, where it is a pipe (FIFO) or a
// terminal. Setting O_NONBLOCK on fd itself would change the file the shell shares with us,
// and outlive us if we were killed.
UniqueFd OpenNonBlocking(int fd, const struct stat& st) {
  if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) return UniqueFd();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  return UniqueFd(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
}

// A pipe of the default 64 KiB takes a step's 1 MiB reads in pieces, each a wait for the reader:
// `run | cat` went 1.25x faster with 1 MiB (docs/performance.md, session 23). Best effort: past
// fs/pipe-user-pages-soft the kernel refuses, and the pipe stays as it was.
void GrowIfPipe(int fd, const struct stat& st) {
  if (S_ISFIFO(st.st_mode)) (void)::fcntl(fd, F_SETPIPE_SZ, kPipeSize);
}

}  // namespace

StdioSink::StdioSink(EventLoop& loop) : loop_(loop) {
  struct stat st_out {}, st_err {};
  const bool out_known = ::fstat(1, &st_out) == 0;
  const bool err_known = ::fstat(2, &st_err) == 0;
  out_.name = "stdout";
  err_own_.name = "stderr";
  out_.fd = 1;
  err_own_.fd = 2;
  if (out_known) {
    GrowIfPipe(1, st_out);
    out_.own = OpenNonBlocking(1, st_out);
    if (out_.own.valid()) out_.fd = out_.own.get();
    out_.socket = S_ISSOCK(st_out.st_mode);
  }
  // `2>&1` into a pipe or a terminal: one queue keeps the two streams in the order written.
  if (out_known && err_known && out_.own.valid() && st_out.st_dev == st_err.st_dev &&
      st_out.st_ino == st_err.st_ino && st_out.st_rdev == st_err.st_rdev) {
    err_ = &out_;
    return;
  }
  if (err_known) {
    GrowIfPipe(2, st_err);
    err_own_.own = OpenNonBlocking(2, st_err);
    if (err_own_.own.valid()) err_own_.fd = err_own_.own.get();
    err_own_.socket = S_ISSOCK(st_err.st_mode);
  }
}

void StdioSink::Failed(Out& o, int err) {
  o.failed = true;
  o.queued.clear();
  if (on_error) on_error(ErrnoError(std::string("writing the job's output to ") + o.name, err));
}

size_t StdioSink::WriteNow(Out& o, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    // A socket cannot be opened again, but send(2) takes "do not wait" per call.
    const ssize_t n = o.socket ? ::send(o.fd, bytes.data() + done, bytes.size() - done,
                                        MSG_DONTWAIT | MSG_NOSIGNAL)
                               : ::write(o.fd, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    Failed(o, n < 0 ? errno : EIO);
    return bytes.size();
  }
  return done;
}

bool StdioSink::Push(Out& o) {
  o.queued.erase(0, WriteNow(o, o.queued));
  return o.queued.empty();
}

void StdioSink::Write(OutputStream stream, std::string_view bytes) {
  Out& o = For(stream);
  if (o.failed || bytes.empty()) return;
  // Behind bytes already waiting, these wait too (a write would fail the same way right now).
  // Otherwise they go straight from the caller's buffer; only what finds no room is copied.
  if (o.queued.empty()) bytes.remove_prefix(WriteNow(o, bytes));
  if (o.failed || bytes.empty()) return;
  o.queued.append(bytes);
  waiting_ = true;
}

bool StdioSink::Full() {
  if (!waiting_) return false;
  bool still = false;
  for (Out* o : {&out_, &err_own_}) {
    if (!o->queued.empty() && !Push(*o)) still = true;
  }
  waiting_ = still;
  return still;
}

StdioSink::~StdioSink() {
  if (look_again_) loop_.CancelTimer(look_again_);
  Unwatch(out_);
  Unwatch(err_own_);
}

void StdioSink::Unwatch(Out& o) {
  if (o.watch) loop_.Unwatch(o.watch);
  o.watch = 0;
}

bool StdioSink::ArmWatches() {
  bool watching = false;
  for (Out* o : {&out_, &err_own_}) {
    if (o->queued.empty()) continue;
    if (!o->watch) {
      auto w = loop_.Watch(o->fd, EPOLLOUT, [this, o](uint32_t) { OnRoom(*o); });
      if (w.ok()) o->watch = *w;
    }
    watching |= o->watch != 0;
  }
  return watching;
}

void StdioSink::WhenRoom(std::function<void()> resume) {
  resumes_.push_back(std::move(resume));
  WaitForRoom();
}

void StdioSink::WaitForRoom() {
  if (ArmWatches() || look_again_) return;
  // Room came meanwhile, or a destination cannot be watched: look again shortly.
  look_again_ = loop_.After(Full() ? Duration(std::chrono::milliseconds(10)) : Duration(0), [this] {
    look_again_ = 0;
    OnRoom(out_);
  });
}

void StdioSink::OnRoom(Out& o) {
  if (!o.queued.empty() && !Push(o)) return;  // still bytes waiting: the watch stays
  Unwatch(o);
  if (resumes_.empty()) return;
  if (Full()) {
    WaitForRoom();  // the other destination still has none
    return;
  }
  auto resumes = std::move(resumes_);
  resumes_.clear();
  for (auto& resume : resumes) resume();
}

void StdioSink::Drain(int interrupt_fd) {
  Unwatch(out_);
  Unwatch(err_own_);
  for (Out* o : {&out_, &err_own_}) {
    while (!o->queued.empty() && !Push(*o)) {
      pollfd p[2] = {{o->fd, POLLOUT, 0}, {interrupt_fd, POLLIN, 0}};
      const int r = ::poll(p, interrupt_fd >= 0 ? 2 : 1, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return;
    }
  }
  waiting_ = false;
}

}  // namespace sr::cli
