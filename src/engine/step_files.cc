#include "engine/step_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "engine/outputs.h"
#include "util/fd.h"

namespace sr::engine {
namespace {

void RemovePair(const std::string& base) {
  ::unlink((base + ".out").c_str());
  ::unlink((base + ".env").c_str());
}

// Still the empty private file the runner created: a regular file (not a symlink, FIFO or
// directory put in its place), ours, 0600, one link (no name elsewhere that a later write could
// reach), nothing in it.
bool EmptyAndPrivate(const std::string& path) {
  static const uid_t self = ::geteuid();
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
         st.st_nlink == 1 && st.st_uid == self && (st.st_mode & 07777) == 0600;
}

}  // namespace

StepFilePool::~StepFilePool() {
  for (const auto& base : idle_) RemovePair(base);
}

StepFilePool::Base StepFilePool::Take() {
  if (!idle_.empty()) {
    Base b{std::move(idle_.back()), true};
    idle_.pop_back();
    return b;
  }
  return {*dir_ + "/step-" + std::to_string(++counter_), false};
}

StepFiles::StepFiles(StepFilePool* pool, std::string base)
    : pool_(pool), base_(std::move(base)), output_(base_ + ".out"), exports_(base_ + ".env") {}

StepFiles::StepFiles(StepFiles&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)),
      base_(std::move(o.base_)),
      output_(std::move(o.output_)),
      exports_(std::move(o.exports_)),
      script_written_(o.script_written_),
      output_empty_(o.output_empty_),
      exports_empty_(o.exports_empty_),
      reusable_(o.reusable_) {}

Result<StepFiles> StepFiles::Open(StepFilePool& pool, StepFilePool::Base base) {
  StepFiles f(&pool, std::move(base.path));
  if (base.exists) return f;
  for (const auto* p : {&f.output_, &f.exports_}) {
    UniqueFd fd(::open(p->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoError("creating " + *p, errno);
  }
  return f;
}

StepFiles::~StepFiles() {
  if (!pool_) return;  // moved from
  // The script's text is never reused: it is written anew, so a stale one must not linger.
  if (script_written_) ::unlink((base_ + ".sh").c_str());
  if (reusable_) {
    pool_->Give(std::move(base_));
  } else {
    RemovePair(base_);
  }
}

void StepFiles::Inspect(bool clean_end) {
  output_empty_ = EmptyAndPrivate(output_);
  exports_empty_ = EmptyAndPrivate(exports_);
  reusable_ = clean_end && output_empty_ && exports_empty_;
}

Result<std::string> StepFiles::Read(const std::string& path, bool known_empty) {
  if (known_empty) return std::string();
  // Never more than the limit + 1 bytes: a step can leave a huge (even sparse) file, or a FIFO.
  auto text = ReadFilePrefix(path, kMaxOutputFileBytes, /*regular_only=*/true);
  if (text.ok() && text->size() > kMaxOutputFileBytes) {
    return FailedError("larger than " + std::to_string(kMaxOutputFileBytes) + " bytes");
  }
  return text;
}

}  // namespace sr::engine
