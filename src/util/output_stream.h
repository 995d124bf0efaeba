// Which of a process's two output streams bytes came from. Shared by the supervisor (its pipes),
// the engine (its sink) and the log (which interleaves both), so none of them includes another
// stage's header for it.
#pragma once

namespace sr {

enum class OutputStream { kStdout, kStderr };

}  // namespace sr
