// For the oci/ unit tests (src/oci/*_test.cc): a Task run to its end on an event loop.
#pragma once

#include <optional>
#include <utility>

#include "loop/loop.h"
#include "loop/task.h"

namespace sr::oci {

// Runs a Task to its end on a fresh loop.
template <class T>
T RunOnLoop(EventLoop& loop, Task<T> task) {
  std::optional<T> out;
  StartTask<T>(std::move(task), [&](T v) { out.emplace(std::move(v)); });
  loop.RunUntil([&] { return out.has_value(); });
  return std::move(*out);
}

}  // namespace sr::oci
