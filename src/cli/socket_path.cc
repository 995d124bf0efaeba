// Where the socket lives, and who may own it (contract section 7 item 6).
//
// The socket is the key to every job's variables, masked ones included: a client must never talk
// to a server another local user planted. The default therefore lives in a directory only its
// owner can enter, and clients refuse a socket owned by neither root nor themselves.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cli/cli.h"
#include "cli/switches.h"
#include "util/tempdir.h"

namespace sr::cli {
namespace {

std::string UserName(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return std::string(found->pw_name) + " (uid " + std::to_string(uid) + ")";
  }
  return "uid " + std::to_string(uid);
}

}  // namespace

std::string DefaultSocketDir() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) return xdg;
  if (::geteuid() == 0) return "/run/step-runner";
  return ReadSwitches(ProcessEnv()).temp_base + "/step-runner-" + std::to_string(::geteuid());
}

std::string DefaultSocketPath() { return DefaultSocketDir() + "/step-runner.sock"; }

Status PrivateSocketDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("creating socket dir " + dir, errno);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return ErrnoError("socket dir " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return InvalidError("socket dir " + dir + " is not a directory");
  if (st.st_uid != ::geteuid()) {
    return InvalidError("socket dir " + dir + " belongs to " + UserName(st.st_uid) +
                        ", not to this user: refusing to use it");
  }
  if ((st.st_mode & 0077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return ErrnoError("making socket dir " + dir + " private", errno);
  }
  return Ok();
}

Status CheckSocketOwner(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Ok();  // nothing there: connecting will say so
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return InvalidError("socket " + path + " belongs to " + UserName(st.st_uid) +
                        ", neither root nor this user: refusing to connect");
  }
  return Ok();
}

}  // namespace sr::cli
