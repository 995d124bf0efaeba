#include "supervisor/cgroupfs.h"

#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace sr {

namespace {
bool Octal(char c) { return c >= '0' && c <= '7'; }
}  // namespace

std::string UnescapeMountPath(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && Octal(s[i + 1]) && Octal(s[i + 2]) &&
        Octal(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                                      (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<MountEntry> ParseMountinfo(std::string_view text) {
  std::vector<MountEntry> mounts;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    // "36 35 98:0 /root /mnt opts [optional fields...] - fstype source super-options"
    const size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream head(line.substr(0, sep)), tail(line.substr(sep + 3));
    std::string id, parent, dev, root, mount_point, source;
    MountEntry m;
    head >> id >> parent >> dev >> root >> mount_point;
    tail >> m.fstype >> source >> m.options;
    m.root = UnescapeMountPath(root);
    m.mount_point = UnescapeMountPath(mount_point);
    mounts.push_back(std::move(m));
  }
  return mounts;
}

bool RemoveEmptyCgroupTree(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> subs;
    while (dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
          std::strcmp(e->d_name, "..") != 0) {
        subs.push_back(dir + "/" + e->d_name);
      }
    }
    ::closedir(d);
    for (const auto& s : subs) RemoveEmptyCgroupTree(s);
  }
  return ::rmdir(dir.c_str()) == 0;
}

}  // namespace sr
