#include "util/result.h"

#include <cerrno>
#include <cstring>

namespace sr {

Error ErrnoError(const std::string& what, int err) {
  const bool exhausted = err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOSPC ||
                         err == EDQUOT || err == EAGAIN;
  return {exhausted ? Error::Kind::kExhausted : Error::Kind::kInternal, what + ": " + std::strerror(err)};
}

}  // namespace sr
