#include "support/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sr::test {

std::string Binary() { return STEP_RUNNER_BINARY; }

namespace {

// The whole content of a file ("" when it cannot be read).
std::string WholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TestDir::TestDir() {
  std::string tmpl = std::filesystem::temp_directory_path().string() + "/sr-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = std::filesystem::canonical(buf.data()).string();
}

TestDir::~TestDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TestDir::Write(const std::string& rel, const std::string& content, int mode) const {
  std::string full = path_ + "/" + rel;
  std::filesystem::create_directories(std::filesystem::path(full).parent_path());
  std::ofstream(full, std::ios::binary | std::ios::trunc) << content;
  ::chmod(full.c_str(), mode);
  return full;
}

std::string TestDir::Read(const std::string& rel) const {
  return WholeFile(rel.empty() || rel[0] == '/' ? rel : path_ + "/" + rel);
}

bool TestDir::Exists(const std::string& rel) const {
  return std::filesystem::exists(rel.empty() || rel[0] == '/' ? rel : path_ + "/" + rel);
}

std::vector<std::string> ChildEnvironment(const Options& options, const std::string& own_tmpdir) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (const size_t eq = kv.find('='); eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& k : options.unset_env) env.erase(k);
  const bool tmpdir_chosen =
      options.env.count("TMPDIR") != 0 ||
      std::find(options.unset_env.begin(), options.unset_env.end(), "TMPDIR") != options.unset_env.end();
  if (!own_tmpdir.empty() && !tmpdir_chosen) env["TMPDIR"] = own_tmpdir;
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> strings;
  for (const auto& [k, v] : env) strings.push_back(k + "=" + v);
  return strings;
}

std::vector<char*> ExecVector(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

Child::Child(const std::vector<std::string>& argv, const Options& options) : options_(options) {
  char tmpl[] = "/tmp/sr-child-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  out_path_ = dir_ + "/out";
  err_path_ = dir_ + "/err";
  // A TMPDIR of its own unless the test chose one: whatever a runner leaves there (a git cache,
  // a killed runner's files) goes with the child, not into the machine's /tmp.
  const std::string own_tmp = dir_ + "/tmp";
  std::vector<std::string> env_strings =
      ChildEnvironment(options, ::mkdir(own_tmp.c_str(), 0700) == 0 ? own_tmp : "");
  std::vector<std::string> argv_copy = argv;
  std::vector<char*> envp = ExecVector(env_strings), args = ExecVector(argv_copy);
  pid_ = ::fork();
  if (pid_ == 0) {
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!options_.cwd.empty() && ::chdir(options_.cwd.c_str()) != 0) ::_exit(126);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
}

Child::~Child() {
  if (!waited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void Child::Signal(int signo) { ::kill(pid_, signo); }

Output Child::Wait() {
  if (waited_) return result_;
  auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (r < 0) {  // someone else reaped it (ReapOrphans): status unknown
      status = 0;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  waited_ = true;
  if (WIFEXITED(status)) result_.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result_.signal = WTERMSIG(status);
  std::ifstream o(out_path_, std::ios::binary), e(err_path_, std::ios::binary);
  std::stringstream so, se;
  so << o.rdbuf();
  se << e.rdbuf();
  result_.out = so.str();
  result_.err = se.str();
  return result_;
}

bool Child::WaitForFile(const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) return true;
    int status;
    if (!waited_ && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      // Exited early: keep its status for Wait().
      waited_ = true;
      if (WIFEXITED(status)) result_.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) result_.signal = WTERMSIG(status);
      std::ifstream o(out_path_), e(err_path_);
      std::stringstream so, se;
      so << o.rdbuf();
      se << e.rdbuf();
      result_.out = so.str();
      result_.err = se.str();
      return std::filesystem::exists(path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::string Child::StdoutSoFar() const { return WholeFile(out_path_); }

std::string Child::StderrSoFar() const { return WholeFile(err_path_); }

Output RunStepRunner(const std::vector<std::string>& args, const Options& options) {
  std::vector<std::string> argv{Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  Child child(argv, options);
  return child.Wait();
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

std::vector<pid_t> ReadPids(const std::string& path) {
  std::ifstream in(path);
  std::vector<pid_t> pids;
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

void BecomeSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

void ReapOrphans() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

bool KernelAtLeast(int major, int minor) {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

}  // namespace sr::test
