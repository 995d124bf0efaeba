// A tree's stdout and stderr pipes: non-blocking read ends on the loop, bytes to on_output.
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "supervisor/tree.h"

namespace sr {
namespace {

// Bytes per readiness callback, so one chatty tree cannot starve the rest of the loop; the
// watch is level-triggered and comes back for the remainder.
constexpr size_t kBytesPerWakeup = 1024 * 1024;
// Bytes per drain. Normally a drain meets EOF at once (every writer is dead), but a writer we
// cannot see (fallback: it cleared its environment) must not keep the loop here forever.
constexpr size_t kBytesPerDrain = 16 * 1024 * 1024;
// A pipe's default capacity (64 KiB) and the size it grows to once a step fills it.
constexpr size_t kSmallRead = 64 * 1024;
constexpr size_t kBigRead = 1024 * 1024;

}  // namespace

Status TreeImpl::WatchPipe(Pipe& p) {
  if (!p.fd.valid()) return Ok();  // output not captured
  // The read end of a fresh pipe: O_NONBLOCK is its only status flag (the write end, the
  // child's, stays blocking: pipe2's flags would apply to both).
  if (::fcntl(p.fd.get(), F_SETFL, O_NONBLOCK) != 0) return ErrnoError("fcntl O_NONBLOCK", errno);
  return WatchReadable(p);
}

Status TreeImpl::WatchReadable(Pipe& p) {
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

void TreeImpl::PauseOutput() {
  for (Pipe* p : {&out_, &err_}) {
    if (!p->watch) continue;
    loop_->Unwatch(p->watch);
    p->watch = 0;
    p->paused = true;
  }
  if (awaiting_room_ || !when_output_room_) return;
  awaiting_room_ = true;
  // The sink calls back on the loop once its destination can take bytes again; a tree gone by
  // then is not resumed.
  when_output_room_([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    self->awaiting_room_ = false;
    self->ResumeOutput();
  });
}

void TreeImpl::ResumeOutput() {
  if (!live()) return;
  if (output_paused_ && output_paused_()) {
    PauseOutput();
    return;
  }
  auto self = shared_from_this();
  for (Pipe* p : {&out_, &err_}) {
    if (!p->paused) continue;
    p->paused = false;
    if (!p->fd.valid()) continue;
    if (!WatchReadable(*p).ok()) {
      ClosePipe(*p);  // cannot watch it: the stream ends here, as a read error would end it
      continue;
    }
    ReadPipe(*p, false);
  }
  if (PipesClosed()) Progress();
}

void TreeImpl::ReadPipe(Pipe& p, bool drain) {
  char small[kSmallRead];
  const size_t budget = drain ? kBytesPerDrain : kBytesPerWakeup;
  for (size_t done = 0; done < budget;) {
    if (!p.fd.valid()) return;
    // A drain comes once no member is left: what is in the pipes then is bounded, and taken.
    if (!drain && output_paused_ && output_paused_()) {
      PauseOutput();
      return;
    }
    if (move_output_ && on_output_ && !p.refused_move) {
      OutputMove m = move_output_(p.stream, p.fd.get(), p.grown ? kBigRead : kSmallRead);
      if (m.kind == OutputMove::Kind::kMoved) {
        done += m.bytes;
        if (!p.grown && m.bytes == kSmallRead) GrowPipe(p);
        continue;
      }
      if (m.kind == OutputMove::Kind::kEmpty) return;
      if (m.kind == OutputMove::Kind::kEnd) {
        ClosePipe(p, /*at_eof=*/true);
        return;
      }
      p.refused_move = true;  // kRefused: read what is there, and Write it
    }
    if (p.grown && !p.big) p.big = std::make_unique_for_overwrite<char[]>(kBigRead);
    char* buf = p.grown ? p.big.get() : small;
    const size_t size = p.grown ? kBigRead : kSmallRead;
    ssize_t r = ::read(p.fd.get(), buf, size);
    if (r > 0) {
      done += static_cast<size_t>(r);
      if (on_output_) on_output_(p.stream, std::string_view(buf, static_cast<size_t>(r)));
      if (!p.grown && static_cast<size_t>(r) == kSmallRead) GrowPipe(p);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return;
    ClosePipe(p, /*at_eof=*/r == 0);  // EOF (or an error, which ends the stream just the same)
    return;
  }
}

// Only a step that filled its pipe gets the bigger one: pipe pages count against the user's
// budget (fs/pipe-user-pages-soft, 64 MiB by default), past which the kernel gives every new pipe
// of that user two pages, so a thousand quiet steps must not each hold 1 MiB. If the kernel
// refuses (that budget, fs/pipe-max-size), the pipe keeps its size and is read in big pieces
// anyway.
void TreeImpl::GrowPipe(Pipe& p) {
  (void)::fcntl(p.fd.get(), F_SETPIPE_SZ, static_cast<int>(kBigRead));
  p.grown = true;
}

void TreeImpl::ClosePipe(Pipe& p, bool at_eof) {
  if (at_eof && p.watch && loop_ && owner_) {
    // Closing the last handle of a pipe frees it (its inode, its buffers, the epoll entry):
    // ~5 us that the next step would wait for. Out of the epoll set now, closed after the next
    // spawn (docs/performance.md, issue 17 round 3).
    loop_->Unwatch(p.watch);
    p.watch = 0;
    owner_->CloseLater(std::move(p.fd));
    return;
  }
  // Only the runner holds a read end (close-on-exec, and the loop thread is suspended while a
  // child that shares the fd table has not exec'd yet), so the close below ends the watch.
  if (p.watch && loop_) loop_->UnwatchClosing(p.watch);
  p.watch = 0;
  p.fd.Reset();
}

void TreeImpl::DrainPipes() {
  ReadPipe(out_, true);
  ReadPipe(err_, true);
}

}  // namespace sr
