// Ownership marks: which step-runner instance created a directory in $TMPDIR (or a cgroup).
//
// A runner killed with SIGKILL cannot clean up; the next runner started with the same TMPDIR
// does it for it (contract section 7 item 1). For that it must tell a dead owner's leftovers
// from a live instance's files with certainty, since several runners may share one /tmp. The
// mark is a small file holding the owner's pid and its start time (clock ticks since boot, field
// 22 of /proc/<pid>/stat): a pid alone can be recycled, pid + start time names one process.
// Anything without a readable mark is never touched.
#pragma once

#include <sys/types.h>

#include <string>

#include "util/result.h"

namespace sr {

/// The name of the mark file inside an owned directory.
inline constexpr char kOwnerFile[] = ".step-runner-owner";

/// This process's start ticks (ProcessStartTicks), read once; 0 when /proc cannot be read.
unsigned long long SelfStartTicks();
/// "<pid> <start ticks>" of this process.
std::string SelfOwnerMark();
/// Writes the mark into `dir` (mode 0600).
Status MarkOwned(const std::string& dir);

enum class Owner { kUnknown, kLive, kDead };
/// Reads a mark ("<pid> <start ticks>" as the first line of `text`): kLive if that very process
/// runs (a zombie counts as dead), kDead if it does not, kUnknown if the text is no mark.
/// `*pid`, if given, receives the owner's pid.
Owner OwnerFromMark(const std::string& text, pid_t* pid = nullptr,
                    unsigned long long* start_ticks = nullptr);
/// OwnerFromMark of `dir`/.step-runner-owner; kUnknown when there is no such file.
Owner OwnerOfDir(const std::string& dir, pid_t* pid = nullptr,
                 unsigned long long* start_ticks = nullptr);
/// Whether process `pid` with start time `start_ticks` runs (kLive) or not (kDead; a zombie is
/// dead).
Owner OwnerOfProcess(pid_t pid, unsigned long long start_ticks);

/// A marked directory is made and removed under a name that itself says whose it is,
/// `<parent>/.step-runner-owned-<pid>-<start ticks>-XXXXXX`, and is under its own name only
/// while marked (util/tempdir.h MakeOwnedDir, RemoveOwnedTree): a SIGKILL between the mkdir and
/// the mark's write, or between the mark's unlink and the rmdir, leaves a directory the next
/// runner's sweep still knows as a dead runner's.
inline constexpr char kTransitPrefix[] = ".step-runner-owned-";
/// `kTransitPrefix` + "<pid>-<start ticks>-" of this process.
std::string SelfTransitPrefix();
/// The owner named by a transit name (the last path component), kUnknown if it is none.
Owner OwnerFromTransitName(const std::string& name, pid_t* pid = nullptr,
                           unsigned long long* start_ticks = nullptr);

/// Start time of a process in clock ticks since boot; 0 when it is gone; `*zombie` set if given.
unsigned long long ProcessStartTicks(pid_t pid, bool* zombie = nullptr);
/// Now, on the clock of ProcessStartTicks (CLOCK_BOOTTIME in clock ticks, truncated): a process
/// with a start time below it started before this call.
unsigned long long TicksSinceBoot();

}  // namespace sr
