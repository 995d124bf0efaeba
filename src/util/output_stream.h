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
  };
  Kind kind;
  size_t bytes = 0;
};

/// Moves up to `max` bytes from the non-blocking pipe `from` to the file `to`, at `*offset`
/// (advanced) or, when `offset` is null, at `to`'s own position. Anything splice(2) cannot do is
/// kRefused, a destination that would make it wait (a full pipe) too: the caller then reads the
/// pipe and writes, where its sink handles waiting. (Into a file, the one user, the job log.)
OutputMove SpliceOut(int from, int to, int64_t* offset, size_t max);

}  // namespace sr
