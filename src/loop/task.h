// Task<T>: a lazily started C++20 coroutine, so the engine reads as straight-line code
// ("spawn, await exit, read outputs") while running on the single event-loop thread.
//
// A Task starts when awaited and resumes its awaiter when it finishes (symmetric transfer, no
// stack growth). Top-level tasks are started with StartTask(), which calls a callback with the
// result. Exceptions are not used, but library code (nlohmann::json) may throw: an exception
// escaping a Task is rethrown to its awaiter, so an edge (src/oci's entry points) can turn it
// into an error; one reaching a top-level task terminates.
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

namespace sr {

template <class T>
class [[nodiscard]] Task {
 public:
  struct promise_type {
    std::optional<T> value;
    std::exception_ptr exception;
    std::coroutine_handle<> continuation;

    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto next = h.promise().continuation;
        return next ? next : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <class U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
  };

  Task(Task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
    h_.promise().continuation = awaiter;
    return h_;
  }
  T await_resume() {
    if (h_.promise().exception) std::rethrow_exception(h_.promise().exception);
    return std::move(*h_.promise().value);
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace task_internal {
// A self-destroying coroutine that drives one Task to completion.
struct Detached {
  struct promise_type {
    Detached get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

template <class T>
Detached Drive(Task<T> task, std::function<void(T)> done) {
  T result = co_await task;
  done(std::move(result));
}
}  // namespace task_internal

/// Starts `task` now; `done` is called with its result when it finishes (maybe before return).
template <class T>
void StartTask(Task<T> task, std::function<void(T)> done) {
  task_internal::Drive<T>(std::move(task), std::move(done));
}

/// Awaits a callback-style operation: `start(resume)` begins it, and the operation calls
/// `resume(value)` exactly once, on the loop thread (possibly before `start` returns).
template <class T>
class CallbackAwaiter {
 public:
  using Starter = std::function<void(std::function<void(T)>)>;
  explicit CallbackAwaiter(Starter start) : start_(std::move(start)) {}

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    handle_ = h;
    start_([this](T v) {
      value_.emplace(std::move(v));
      if (suspended_) handle_.resume();
    });
    // If the operation finished synchronously, do not suspend at all.
    suspended_ = !value_.has_value();
    return suspended_;
  }
  T await_resume() { return std::move(*value_); }

 private:
  Starter start_;
  std::coroutine_handle<> handle_;
  std::optional<T> value_;
  bool suspended_ = false;
};

template <class T>
CallbackAwaiter<T> AwaitCallback(typename CallbackAwaiter<T>::Starter start) {
  return CallbackAwaiter<T>(std::move(start));
}

}  // namespace sr
