// A tree's stdout and stderr pipes: non-blocking read ends on the loop, bytes to on_output.
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "supervisor/tree.h"

namespace sr {
namespace {

// Reads per readiness callback, so one chatty tree cannot starve the rest of the loop; the
// watch is level-triggered and comes back for the remainder.
constexpr int kReadsPerWakeup = 16;
// Reads per drain. Normally a drain meets EOF at once (every writer is dead), but a writer we
// cannot see (fallback: it cleared its environment) must not keep the loop here forever.
constexpr int kReadsPerDrain = 256;

}  // namespace

Status TreeImpl::WatchPipe(Pipe& p) {
  if (!p.fd.valid()) return Ok();  // output not captured
  int flags = ::fcntl(p.fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(p.fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoError("fcntl O_NONBLOCK", errno);
  }
  Pipe* raw = &p;
  auto w = loop_->Watch(p.fd.get(), EPOLLIN, [this, raw](uint32_t) {
    auto self = shared_from_this();  // on_output may drop the caller's last handle
    ReadPipe(*raw, false);
    if (!raw->fd.valid()) Progress();
  });
  if (!w.ok()) return w.error();
  p.watch = *w;
  return Ok();
}

void TreeImpl::ReadPipe(Pipe& p, bool drain) {
  char buf[65536];
  const int limit = drain ? kReadsPerDrain : kReadsPerWakeup;
  for (int n = 0; n < limit; ++n) {
    if (!p.fd.valid()) return;
    ssize_t r = ::read(p.fd.get(), buf, sizeof buf);
    if (r > 0) {
      if (on_output_) on_output_(p.stream, std::string_view(buf, static_cast<size_t>(r)));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return;
    ClosePipe(p);  // EOF (or an error, which ends the stream just the same)
    return;
  }
}

void TreeImpl::ClosePipe(Pipe& p) {
  if (p.watch && loop_) loop_->Unwatch(p.watch);
  p.watch = 0;
  p.fd.Reset();
}

void TreeImpl::DrainPipes() {
  ReadPipe(out_, true);
  ReadPipe(err_, true);
}

}  // namespace sr
