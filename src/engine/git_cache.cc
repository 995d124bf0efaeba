#include "engine/git_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>

#include "engine/command.h"
#include "engine/internal.h"
#include "supervisor/leftovers.h"
#include "util/owner.h"
#include "util/tempdir.h"

namespace sr::engine {
namespace {

// A file-system-safe name for a URL: keep [A-Za-z0-9._-], escape the rest as _XX.
std::string Escape(const std::string& url) {
  std::string out;
  for (unsigned char c : url) {
    if (std::isalnum(c) || c == '.' || c == '-') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "_%02x", c);
      out += buf;
    }
  }
  return out;
}

// The first non-empty line of git's output, or its exit status if it printed nothing.
std::string FirstLine(const std::string& output, int exit_code) {
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) return line;
    start = end + 1;
  }
  return "exit status " + std::to_string(exit_code);
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// A temporary directory marked as this runner's (util/owner.h): if the runner is killed while
// git works in it, the next runner started with the same TMPDIR removes it (leftovers.h).
Result<TempDir> OwnedTemp(const char* prefix, const std::string& parent) {
  return TempDir::CreateOwned(prefix, parent);
}

}  // namespace

GitCache::GitCache(Supervisor& sup, std::string dir, std::vector<std::string> env, StoppedFn on_stopped)
    : sup_(sup), dir_(dir.empty() ? "/tmp/step-runner-cache" : std::move(dir)),
      env_(std::move(env)), on_stopped_(std::move(on_stopped)) {}

Task<Result<std::string>> GitCache::Git(std::vector<std::string> args, CancelSource* cancel,
                                        std::string extra_env) {
  ProcessSpec spec;
  spec.argv = {"git"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = env_;
  if (!extra_env.empty()) spec.env.push_back(extra_env);
  auto run = co_await RunCommand(sup_, spec, cancel);
  if (!run.ok()) co_return run.error();
  // The subcommand (after `--git-dir DIR`) names what was stopped or failed.
  const std::string& command = args.size() > 2 && args[0] == "--git-dir" ? args[2] : args[0];
  // Killed by the job's cancel or timeout: the job was cancelled, not the step failed (contract
  // section 2: what the runner did decides, whatever git said as it died).
  if (cancel && cancel->requested()) {
    if (run->exit.stop && on_stopped_) on_stopped_(run->exit, *cancel);
    co_return CancelError(*cancel, "git " + command);
  }
  if (run->exit.spawn_error) co_return run->exit.spawn_error->Wrap("git");
  if (run->exit.exit_code != 0) {
    // One line: errors are one line on stderr (contract section 5), and git's first line
    // ("fatal: …") says what went wrong.
    co_return FailedError("git " + command + ": " + FirstLine(run->output, run->exit.exit_code));
  }
  co_return std::move(run->output);
}

Task<Result<std::string>> GitCache::Checkout(std::string url, std::string rev,
                                              CancelSource* cancel) {
  auto fail = [](const std::string& m) { return FailedError("fetching git step: " + m); };
  // Option-like values would be read by git as flags (e.g. --upload-pack=...): refuse them.
  if (url.empty() || url[0] == '-') co_return fail("invalid repository URL \"" + url + "\"");
  if (rev.empty() || rev[0] == '-' || rev == ".git" || rev.find("..") != std::string::npos) {
    co_return fail("invalid version \"" + rev + "\"");
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir_).parent_path(), ec);
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    co_return fail("creating cache " + dir_ + ": " + std::strerror(errno));
  }
  if (Status ok = CheckPrivate(dir_); !ok.ok()) co_return fail(ok.error().message);
  const std::string repo_dir = dir_ + "/" + Escape(url);
  const std::string bare = repo_dir + "/.git";
  if (!Exists(bare)) {
    // The whole repository directory is made inside a marked temp beside the others and renamed
    // into place once cloned: a clone that fails or is killed leaves no repository directory
    // (the temp goes with it, or at the next start). Into a directory inside the marked one:
    // git clones only into an empty directory.
    auto tmp = OwnedTemp(kGitCloneTemp, dir_);
    if (!tmp.ok()) co_return tmp.error();
    const std::string made = tmp->path() + "/repo";
    const std::vector<std::string> clone{"clone", "--quiet", "--bare", "--", url, made + "/.git"};
    auto cloned = co_await Git(clone, cancel);
    if (!cloned.ok()) co_return cloned.error().Wrap("fetching git step");
    // A rename onto an empty directory replaces it (one an older runner left); onto a full one
    // it fails, and then only the repository goes in (another runner's checkouts may be there).
    if (::rename(made.c_str(), repo_dir.c_str()) != 0 &&
        ::rename((made + "/.git").c_str(), bare.c_str()) != 0 && !Exists(bare)) {
      co_return fail("rename into cache: " + std::string(std::strerror(errno)));
    }
  }
  // GCC 12 miscompiles braced lists inside co_await expressions: build argument lists first.
  const std::vector<std::string> resolve{"--git-dir", bare, "rev-parse", "--verify", "--quiet",
                                         "--end-of-options", rev + "^{commit}"};
  auto commit = co_await Git(resolve, cancel);
  if (!commit.ok() && commit.error().kind == Error::Kind::kFailed) {
    const std::vector<std::string> fetch{"--git-dir", bare,     "fetch",  "--quiet", "--force",
                                         "--tags",    "--", "origin", "+refs/heads/*:refs/heads/*"};
    auto fetched = co_await Git(fetch, cancel);
    if (!fetched.ok()) co_return fetched.error().Wrap("fetching git step");
    commit = co_await Git(resolve, cancel);
    if (!commit.ok() && commit.error().kind == Error::Kind::kFailed) {
      co_return fail("cannot find version \"" + rev + "\"");
    }
  }
  if (!commit.ok()) co_return commit.error().Wrap("fetching git step");
  std::string hash = *commit;
  while (!hash.empty() && (hash.back() == '\n' || hash.back() == ' ')) hash.pop_back();
  // A short hash must have at least 8 characters, as in the Go runner.
  if (rev.size() < 8 && hash.rfind(rev, 0) == 0 && rev != hash) {
    const std::vector<std::string> show{"--git-dir", bare, "show-ref", "--", rev};
    auto shown = co_await Git(show, cancel);
    if (!shown.ok() && shown.error().kind != Error::Kind::kFailed) co_return shown.error().Wrap("fetching git step");
    if (!shown.ok()) co_return fail("cannot find version \"" + rev + "\"");
  }
  const std::string tree_dir = repo_dir + "/" + hash;
  if (Exists(tree_dir)) co_return tree_dir;
  auto tmp = OwnedTemp(kGitTreeTemp, repo_dir);
  if (!tmp.ok()) co_return tmp.error();
  // A private index file: the shared bare repository's own index is never touched, so two
  // checkouts of different commits can run side by side. The tree goes in a directory of its
  // own inside the marked one, so the mark is not part of the checkout.
  const std::string index = tmp->path() + "/index";
  const std::string tree = tmp->path() + "/tree";
  if (::mkdir(tree.c_str(), 0700) != 0) co_return fail("creating " + tree + ": " + std::strerror(errno));
  const std::vector<std::string> checkout{"--git-dir", bare,    "--work-tree", tree, "checkout",
                                          "--quiet",   "--force", hash,         "--",        "."};
  auto out = co_await Git(checkout, cancel, "GIT_INDEX_FILE=" + index);
  if (!out.ok()) co_return out.error().Wrap("fetching git step");
  if (::rename(tree.c_str(), tree_dir.c_str()) != 0 && !Exists(tree_dir)) {
    co_return fail("rename into cache: " + std::string(std::strerror(errno)));
  }
  co_return tree_dir;
}

}  // namespace sr::engine
