// Which of a process's two output streams bytes came from. Shared by the supervisor (its pipes),
// the engine (its sink) and the log (which interleaves both), so none of them includes another
// stage's header for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sr {

enum class OutputStream { kStdout, kStderr };

/// What one attempt to move a stream's bytes from its pipe straight to their destination
/// (splice(2), no copy through the runner) did.
struct OutputMove {
  enum class Kind {
    kMoved,    // `bytes` (> 0) reached the destination
    kEnd,      // the pipe is at its end: every writer closed it
    kEmpty,    // nothing to move now
    kRefused,  // not possible here (destination, error): read the pipe and Write the bytes
    kFull,     // the destination (a non-blocking pipe) is full: try again once it drains
  };
  Kind kind;
  size_t bytes = 0;
};

/// Moves up to `max` bytes from the non-blocking pipe `from` to `to`, at `*offset` (advanced)
/// or, when `offset` is null, at `to`'s own position. A full destination pipe is kFull; anything
/// else splice(2) cannot do is kRefused.
OutputMove SpliceOut(int from, int to, int64_t* offset, size_t max);

}  // namespace sr
