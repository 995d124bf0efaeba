// What tests use to make a resource scarce for the runner: a small tmpfs (a real full disk) and
// the options for a runner whose fd table is full on purpose.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "support/harness.h"
#include "support/hostile.h"  // SR_SANITIZED

namespace sr::test {

// A small tmpfs mounted for one test, unmounted at its end. Needs root.
class SmallDisk {
 public:
  SmallDisk(const std::string& path, const std::string& size = "2m") : path_(path) {
    ::mkdir(path.c_str(), 0700);
    mounted_ = ::mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size + ",mode=0700").c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Options for a runner whose fd table is full on purpose. UBSan checks a vtable pointer it has
// not seen before by writing the vtable's bytes into a pipe, and calls the object invalid when
// pipe() fails: in such a runner each check is a false "object has invalid vptr" (seen as
// StatusRequest and StatusResponse "used after free"; docs/testing.md, "Sanitizers and a full fd
// table"). The vptr check is off in these runners; ASan's own use-after-free detection stays on.
inline void FullFdTable([[maybe_unused]] const TestDir& dir, [[maybe_unused]] Options& o) {
#ifdef SR_SANITIZED
  dir.Write("ubsan.supp", "vptr_check:*\n");
  const char* ubsan = std::getenv("UBSAN_OPTIONS");
  o.env["UBSAN_OPTIONS"] = std::string(ubsan ? ubsan : "") + ":suppressions=" + dir / "ubsan.supp";
#endif
}

}  // namespace sr::test
