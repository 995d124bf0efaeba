// The output and export files of an exec step (reference.md 3.1: "two fresh empty files").
//
// Creating a file costs an inode allocation, and on ext4 a directory that has just seen many
// files deleted makes each one slower (the allocator skips recently freed inodes): with 500
// trivial steps, creating and deleting these two files was the largest part of the runner's own
// cost per step (docs/performance.md, issue 17). A finished step's files that are still what
// the runner made them — empty, private, one link — are handed to the next step of the same job
// instead: to that step they are exactly fresh empty files. Anything else (written, replaced,
// linked, a step that left processes behind) is deleted as before, and the next step gets new
// ones.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace sr::engine {

/// A job's idle file pairs. Owned by the job; removes what it still holds when it goes.
class StepFilePool {
 public:
  explicit StepFilePool(const std::string* dir) : dir_(dir) {}
  ~StepFilePool();
  StepFilePool(const StepFilePool&) = delete;
  StepFilePool& operator=(const StepFilePool&) = delete;

  /// A base path (`<dir>/step-N`) for a step's files: an idle pair's (`exists`), else a new name.
  struct Base {
    std::string path;
    bool exists = false;
  };
  Base Take();
  /// `base`'s .out and .env are empty private files again, free for the next step.
  void Give(std::string base) { idle_.push_back(std::move(base)); }

 private:
  const std::string* dir_;  // the job's temp dir (RunOptions::temp_dir, set before the run)
  int counter_ = 0;
  std::vector<std::string> idle_;
};

/// One step's pair, from the pool or new. Destruction gives it back or deletes it.
class StepFiles {
 public:
  /// Creates the files unless `base` names an idle pair that exists already.
  static Result<StepFiles> Open(StepFilePool& pool, StepFilePool::Base base);
  StepFiles(StepFiles&& o) noexcept;
  StepFiles& operator=(StepFiles&&) = delete;
  ~StepFiles();

  const std::string& output() const { return output_; }
  const std::string& exports() const { return exports_; }
  /// `<base>.sh`, where a script step's text goes; deleted with the step.
  std::string script() { script_written_ = true; return base_ + ".sh"; }

  /// Looks at both files once the step's processes are gone. `clean_end`: nothing of the step
  /// outlived its main process, so nobody can still write to them.
  void Inspect(bool clean_end);
  /// A file's content (bounded by kMaxOutputFileBytes); "" without a read when Inspect saw it
  /// empty and untouched.
  Result<std::string> ReadOutput() const { return Read(output_, output_empty_); }
  Result<std::string> ReadExports() const { return Read(exports_, exports_empty_); }

 private:
  StepFiles(StepFilePool* pool, std::string base);
  static Result<std::string> Read(const std::string& path, bool known_empty);
  StepFilePool* pool_;
  std::string base_, output_, exports_;
  bool script_written_ = false;
  bool output_empty_ = false, exports_empty_ = false;
  bool reusable_ = false;
};

}  // namespace sr::engine
