// The job's output on the runner's own stdout and stderr (`run`, `ci`), written so that the
// event loop never waits for a reader: a terminal that is paused or a pipe nobody reads must not
// hold up a Ctrl-C, a timeout or a grace. Where stdout/stderr are pipes or terminals, the sink
// writes through its own non-blocking open of them (the shell's open file, which others share,
// is left blocking); what does not fit waits in a queue, and while it waits the sink reports
// itself Full(), so the steps' output stays in their pipes and the steps wait on their writes.
// A socket is written with send(MSG_DONTWAIT); a file as before (it does not wait for a reader).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "loop/loop.h"
#include "util/fd.h"

namespace sr::cli {

class StdioSink : public OutputSink {
 public:
  explicit StdioSink(EventLoop& loop);
  ~StdioSink() override;
  StdioSink(const StdioSink&) = delete;
  StdioSink& operator=(const StdioSink&) = delete;

  /// Straight from the caller's buffer; only what finds no room is queued. No splice(2) (Move):
  /// into a file it was 1.25x slower than read + write, its copy made under the step's pipe
  /// lock while the step waits to write (docs/performance.md, session 23).
  void Write(OutputStream stream, std::string_view bytes) override;
  bool Full() override;
  /// One EPOLLOUT watch per destination, however many trees wait on it.
  void WhenRoom(std::function<void()> resume) override;

  /// A line of the runner's own for stderr (a cancel notice, the last error), in order with
  /// the job's output and never blocking the loop.
  void Note(std::string_view line) { Write(OutputStream::kStderr, line); }

  /// At the end: writes what is still queued, waiting for room as long as it takes, unless
  /// `interrupt_fd` becomes readable first (a signal: the user gave up on the reader).
  void Drain(int interrupt_fd);

  /// A write failed (a full disk, a reader gone): the job cannot go on (contract 7.2).
  std::function<void(Error)> on_error;

 private:
  struct Out {
    const char* name = "";  // "stdout" / "stderr"
    int fd = -1;            // where to write: `own` or the inherited 1/2
    UniqueFd own;           // a non-blocking open of the same pipe or terminal
    std::string queued;     // bytes that found no room yet, in order
    bool failed = false;    // reported once through on_error; later bytes are dropped
    bool socket = false;    // written with send(MSG_DONTWAIT) instead
    EventLoop::WatchId watch = 0;  // EPOLLOUT, while trees wait for room
  };
  Out& For(OutputStream stream) { return stream == OutputStream::kStdout ? out_ : *err_; }
  /// Writes as much of `bytes` as fits now; how much that was (all of it once o failed).
  size_t WriteNow(Out& o, std::string_view bytes);
  /// Writes as much of the queue as fits now; true when it is empty.
  bool Push(Out& o);
  void Failed(Out& o, int err);
  void OnRoom(Out& o);
  /// EPOLLOUT on each destination that waits; false when none could be watched.
  bool ArmWatches();
  void WaitForRoom();
  void Unwatch(Out& o);

  EventLoop& loop_;
  Out out_;
  Out err_own_;
  Out* err_ = &err_own_;  // stdout's when both are the same pipe or terminal: one order
  bool waiting_ = false;  // some Out has bytes queued: Full() looks closer
  EventLoop::TimerId look_again_ = 0;  // WaitForRoom's timer, when no watch could be armed
  std::vector<std::function<void()>> resumes_;  // trees waiting for room
};

}  // namespace sr::cli
