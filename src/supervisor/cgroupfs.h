// What the two cgroup back ends share, the cgroup2 leaves (cgroup.h) and the resource
// controllers (controllers.h): finding the mounts in /proc/self/mountinfo, and removing a tree
// of cgroup directories (which rmdir takes only when empty of processes and of children).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sr {

/// One mount, with the fields the supervisor uses; paths are unescaped (mountinfo writes space,
/// tab, newline and backslash as \ooo).
struct MountEntry {
  std::string root;         // the mount's root within its filesystem ("/" or a cgroup path)
  std::string mount_point;  // where it is mounted
  std::string fstype;       // "cgroup2", "cgroup", "tmpfs", ...
  std::string options;      // super options ("rw,memory" for a v1 cgroup hierarchy)
};

/// The mounts of a mountinfo text, in its order; lines without the " - " separator are skipped.
std::vector<MountEntry> ParseMountinfo(std::string_view text);

/// mountinfo's \ooo escapes undone; a backslash not followed by three octal digits is kept.
std::string UnescapeMountPath(std::string_view s);

/// Removes dir and every directory below it, deepest first; a cgroup that still holds a process
/// stays, and so do its parents. True when dir itself is gone (errno says why not).
bool RemoveEmptyCgroupTree(const std::string& dir);

}  // namespace sr
