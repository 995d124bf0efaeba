// A small tmpfs mounted for one test (a real full disk), unmounted at its end. Needs root.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>

#include <string>

namespace sr::test {

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

}  // namespace sr::test
