#include "util/output_stream.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>

namespace sr {

OutputMove SpliceOut(int from, int to, int64_t* offset, size_t max) {
  for (int attempt = 0;; ++attempt) {
    off64_t off = offset ? static_cast<off64_t>(*offset) : 0;
    ssize_t n = ::splice(from, nullptr, to, offset ? &off : nullptr, max, SPLICE_F_MOVE);
    if (n > 0) {
      if (offset) *offset = off;
      return {OutputMove::Kind::kMoved, static_cast<size_t>(n)};
    }
    if (n == 0) return {OutputMove::Kind::kEnd};
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return {OutputMove::Kind::kRefused};
    // The source is non-blocking, which makes a pipe destination non-blocking too: EAGAIN is
    // either "nothing to read" or "the destination is full". Only the first is a wait on the
    // source. Bytes may also have arrived just now: try again before concluding that the
    // destination is full, which is not this function's to wait for.
    int queued = 0;
    if (::ioctl(from, FIONREAD, &queued) == 0 && queued == 0) return {OutputMove::Kind::kEmpty};
    if (attempt == 2) return {OutputMove::Kind::kRefused};
  }
}

}  // namespace sr
