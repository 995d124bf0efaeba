// Loading the step an invocation references: local files, built-in dist:// steps, git
// repositories and dynamic `${{ }}` references (reference.md section 4).
#include <unistd.h>

#include <filesystem>

#include "engine/internal.h"
#include "expr/expr.h"
#include "util/fd.h"

namespace sr::engine {
namespace {

using Protocol = stepfile::Reference::Protocol;

std::string JoinPath(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p == "/") {
      out = "/";
      continue;
    }
    if (!out.empty() && out.back() != '/') out += "/";
    out += p;
  }
  return out;
}

std::string DirOf(const std::string& dir, const std::string& parent) {
  if (dir.empty()) return parent.empty() ? "." : parent;
  if (dir[0] == '/' || parent.empty()) return dir;
  // A run of steps names the same directory from the same place again and again, and
  // lexically_normal costs more than the rest of loading a cached step file (issue 17 round 3).
  thread_local std::string last_dir, last_parent, last_joined;
  if (dir == last_dir && parent == last_parent) return last_joined;
  // "./steps/x" under "." is "steps/x", not "././steps/x" (paths appear in errors and results).
  std::string joined = std::filesystem::path(parent + "/" + dir).lexically_normal().string();
  if (joined.size() > 1 && joined.back() == '/') joined.pop_back();
  if (joined.empty()) joined = ".";
  last_dir = dir;
  last_parent = parent;
  last_joined = joined;
  return joined;
}

Result<LoadedStep> LoadFile(Engine::State& st, const std::string& dir, const std::string& filename) {
  std::string path = dir + "/" + filename;
  struct stat sb {};
  const bool stated = ::stat(path.c_str(), &sb) == 0;
  auto cached = st.step_files.find(path);
  if (stated && cached != st.step_files.end()) {
    const CachedStepFile& c = cached->second;
    if (c.dev == sb.st_dev && c.ino == sb.st_ino && c.size == sb.st_size &&
        c.mtime.tv_sec == sb.st_mtim.tv_sec && c.mtime.tv_nsec == sb.st_mtim.tv_nsec) {
      return c.step;
    }
  }
  // Bounded, and regular files only: a referenced FIFO or device must not block or fill the runner.
  auto text = stepfile::ReadStepText(path, /*regular_only=*/true);
  if (!text.ok() && text.error().kind == Error::Kind::kInvalid) return text.error();  // too big
  if (!text.ok()) return FailedError("loading file \"" + path + "\": " + text.error().message);
  auto file = stepfile::ParseStepFile(*text, path);
  if (!file.ok()) return file.error();
  LoadedStep step;
  step.file = std::move(*file);
  step.dir = dir;
  if (stated) {
    st.step_files[path] = CachedStepFile{sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim, step};
  }
  return step;
}

// The shell the script step runs, chosen as the Go runner's wrapper does.
std::string FindShell() {
  for (const char* sh : {"/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash", "/usr/local/bin/sh",
                         "/usr/bin/sh", "/bin/sh"}) {
    if (::access(sh, X_OK) == 0) return sh;
  }
  return "sh";
}

// dist://script: run the script with `bash -c` directly (no wrapper process in between, so the
// script's shell is the step's main process and gets the cancel signal first).
Result<LoadedStep> ParseScriptStep() {
  static const std::string kText = R"(spec:
  inputs:
    script:
      type: string
---
exec:
  command: ["SHELL", "-c", "${{ inputs.script }}"]
)";
  auto file = stepfile::ParseStepFile(kText, "dist://script");
  if (!file.ok()) return file.error();
  file->definition.command[0] = FindShell();
  LoadedStep step;
  step.file = std::move(*file);
  step.any_outputs = true;
  step.own_files = true;
  return step;
}

// Parsed once per process: every `script:` step is this step.
Result<LoadedStep> ScriptStep() {
  static const Result<LoadedStep> step = ParseScriptStep();
  return step;
}

}  // namespace

Result<LoadedStep> LoadLocalStep(Engine::State& st, const stepfile::Reference& ref,
                                 const std::string& step_dir) {
  return LoadFile(st, DirOf(JoinPath(ref.path), step_dir), ref.filename);
}

Task<Result<LoadedStep>> LoadReference(Engine::State& st, const Scope& caller,
                                       stepfile::Reference ref, const json& view) {
  // Dynamic references may expand to another dynamic reference; bound the chain.
  for (int depth = 0; depth < 16; ++depth) {
    switch (ref.protocol) {
      case Protocol::kLocal:
        co_return LoadLocalStep(st, ref, caller.step_dir);
      case Protocol::kDist: {
        std::string name = JoinPath(ref.path);
        if (name == "script") co_return ScriptStep();
        if (auto builtin = FindBuiltin(name)) co_return std::move(*builtin);
        co_return FailedError("fetching dist step: fetch: distributed step \"" + name +
                              "\" not found");
      }
      case Protocol::kOci: {
        auto dir = co_await FetchOciReference(st, caller, ref, view);
        if (!dir.ok()) co_return dir.error();
        co_return LoadFile(st, *dir, ref.filename);
      }
      case Protocol::kGit: {
        // An expression that fails at run time is the step's failure (exit 1), as in inputs.
        auto url = expr::ExpandString(ref.url, view);
        if (!url.ok()) co_return AsFailure(url.error()).Wrap("expanding git url");
        auto checkout = co_await st.git->Checkout(*url, ref.version, caller.cancel);
        if (!checkout.ok()) co_return checkout.error();
        std::string dir = *checkout;
        std::string sub = JoinPath(ref.path);
        if (sub.find("..") != std::string::npos) {
          co_return FailedError("fetching git step: path \"" + sub + "\" leaves the repository");
        }
        if (!sub.empty()) dir += "/" + sub;
        co_return LoadFile(st, dir, ref.filename);
      }
      case Protocol::kDynamic: {
        auto text = expr::ExpandString(ref.url, view);
        if (!text.ok()) co_return AsFailure(text.error());
        auto parsed = stepfile::ParseShortReference(*text);
        if (!parsed.ok()) co_return AsFailure(parsed.error());  // the text is the run's
        ref = *parsed;
        // Relative dynamic references resolve against the process cwd, as in the Go runner.
        if (ref.protocol == Protocol::kLocal) {
          co_return LoadFile(st, DirOf(JoinPath(ref.path), ""), ref.filename);
        }
        continue;
      }
    }
  }
  co_return FailedError("dynamic step reference nested too deeply");
}

}  // namespace sr::engine
