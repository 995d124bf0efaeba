#include "util/result.h"

#include <cstring>

namespace sr {

Error ErrnoError(const std::string& what, int err) {
  return {Error::Kind::kInternal, what + ": " + std::strerror(err)};
}

}  // namespace sr
