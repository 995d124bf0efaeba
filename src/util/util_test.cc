// The shared small types: durations, signals, deadlines, temp dirs, errors.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include "util/fd.h"
#include "util/kill_deadline.h"
#include "util/result.h"
#include "util/signals.h"
#include "util/tempdir.h"
#include "util/time.h"
#include "util/utf8.h"

namespace sr {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesAndFormatsLikeGo) {
  EXPECT_EQ(ParseDuration("1m30s").value(), 90s);
  EXPECT_EQ(ParseDuration("500ms").value(), 500ms);
  EXPECT_EQ(ParseDuration("0").value(), 0s);
  EXPECT_EQ(FormatDuration(90s), "1m30s");
  EXPECT_EQ(FormatDuration(500ms), "500ms");
  EXPECT_EQ(FormatDuration(0s), "0s");
  for (const char* bad : {"-1s", "10", "5 parsecs", "87601h"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.error().message.find(bad), std::string::npos) << d.error().message;
  }
}

TEST(Signals, NamesAndNumbersBothWays) {
  EXPECT_EQ(ParseSignal("SIGTERM").value(), SIGTERM);
  EXPECT_EQ(ParseSignal("term").value(), SIGTERM);
  EXPECT_EQ(ParseSignal("9").value(), SIGKILL);
  EXPECT_EQ(SignalName(SIGQUIT), "SIGQUIT");
  auto bad = ParseSignal("SIGWHAT");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("SIGWHAT"), std::string::npos);
}

// A warning exists so that a stuck job can be diagnosed before it dies: SIGKILL ended the step at
// the warning (a failure with no termination reason) and SIGSTOP froze it until the deadline.
TEST(Signals, AWarningSignalLeavesTheProcessAbleToReport) {
  EXPECT_EQ(ParseWarningSignal("SIGQUIT", "--timeout").value(), SIGQUIT);
  for (const char* kill : {"SIGKILL", "kill", "9"}) {
    auto r = ParseWarningSignal(kill, "--timeout");
    ASSERT_FALSE(r.ok()) << kill;
    EXPECT_EQ(r.error().kind, Error::Kind::kInvalid);
    EXPECT_EQ(r.error().message, "SIGKILL cannot be a warning: it ends the process (use --timeout)");
  }
  for (const char* stop : {"SIGSTOP", "19"}) {
    auto r = ParseWarningSignal(stop, "timeout");
    ASSERT_FALSE(r.ok()) << stop;
    EXPECT_NE(r.error().message.find("SIGSTOP cannot be a warning"), std::string::npos);
  }
  EXPECT_NE(ParseWarningSignal("SIGBOGUS", "timeout").error().message.find("SIGBOGUS"),
            std::string::npos);
}

// A cancel signal of SIGKILL is a kill without grace, as asked; SIGSTOP would freeze the
// processes for the whole grace, with nothing cleaned up.
TEST(Signals, ACancelSignalMayKillButNotFreeze) {
  EXPECT_EQ(ParseCancelSignal("SIGKILL").value(), SIGKILL);
  EXPECT_EQ(ParseCancelSignal("SIGINT").value(), SIGINT);
  auto stop = ParseCancelSignal("STOP");
  ASSERT_FALSE(stop.ok());
  EXPECT_NE(stop.error().message.find("SIGSTOP cannot be a cancel signal"), std::string::npos);
}

TEST(KillDeadline, OnlyTightens) {
  const auto t0 = Clock::now();
  KillDeadline d = KillDeadline::After(t0, 30s);
  EXPECT_FALSE(d.Tighten(KillDeadline::After(t0, 60s)));  // later: no change
  EXPECT_EQ(d.Left(t0), 30s);
  EXPECT_TRUE(d.Tighten(KillDeadline::After(t0, 1s)));
  EXPECT_EQ(d.Left(t0), 1s);
  EXPECT_TRUE(d.Tighten(KillDeadline{t0 + 5s, true}));  // forced, though not earlier
  EXPECT_TRUE(d.forced);
  EXPECT_EQ(d.Left(t0), 0s);
  EXPECT_FALSE(d.Tighten(KillDeadline{t0 + 1s, true}));
  EXPECT_EQ(KillDeadline::After(t0, -5s).Left(t0), 0s);  // a negative grace is none
}

TEST(TempDir, IsPrivateAndGoesAway) {
  std::string path;
  {
    auto dir = TempDir::Create("util-test-", "/tmp");
    ASSERT_TRUE(dir.ok()) << dir.error().message;
    path = dir->path();
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_TRUE(WriteFile(path + "/inner", "x", 0600).ok());
  }
  struct stat st {};
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  auto missing = TempDir::Create("x-", "/nonexistent-sr-base");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent-sr-base"), std::string::npos);
}

// A write that fails half way (here: the file-size limit, as a full disk would) leaves no cut
// file behind when the file is new; an existing file or a device is never removed.
TEST(WriteFile, AFailedWriteRemovesTheFileItCreated) {
  TempDir dir = TempDir::Create("sr-writefile-").value();
  const std::string fresh = dir.path() + "/fresh";
  const std::string old = dir.path() + "/old";
  ASSERT_TRUE(WriteFile(old, "before").ok());
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  rlimit small = saved;
  small.rlim_cur = 4;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const Status to_fresh = WriteFile(fresh, "more than four bytes");
  const Status to_old = WriteFile(old, "more than four bytes");
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  ASSERT_FALSE(to_fresh.ok());
  EXPECT_NE(to_fresh.error().message.find(fresh), std::string::npos) << to_fresh.error().message;
  EXPECT_NE(::access(fresh.c_str(), F_OK), 0) << "a cut new file was left behind";
  ASSERT_FALSE(to_old.ok());
  EXPECT_EQ(::access(old.c_str(), F_OK), 0) << "a file this call did not create was removed";
  // A device: ENOSPC on every write, and it stays.
  EXPECT_FALSE(WriteFile("/dev/full", "x").ok());
  EXPECT_EQ(::access("/dev/full", F_OK), 0);
}

// Replaced whole or not at all: a failed write keeps the old file and leaves no temporary one;
// the mode is the one asked for, whatever the umask.
TEST(WriteFile, ReplacingIsWholeOrNothing) {
  TempDir dir = TempDir::Create("sr-writefile-").value();
  const std::string path = dir.path() + "/tool";
  ASSERT_TRUE(WriteFile(path, "before").ok());
  const mode_t umask_was = ::umask(077);
  const Status replaced = WriteFileReplacing(path, "after", 0755, ".tmp");
  ::umask(umask_was);
  ASSERT_TRUE(replaced.ok()) << replaced.error().message;
  EXPECT_EQ(ReadFile(path).value(), "after");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const Status cut = WriteFileReplacing(path, "more than four bytes", 0600, ".tmp");
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find(path + ".tmp"), std::string::npos) << cut.error().message;
  EXPECT_EQ(ReadFile(path).value(), "after");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0) << "the temporary file was left";
}

TEST(Error, WrapKeepsTheKindAndPrefixes) {
  Error e = InvalidError("bad key").Wrap("step \"a\"");
  EXPECT_EQ(e.kind, Error::Kind::kInvalid);
  EXPECT_EQ(e.message, "step \"a\": bad key");
}

TEST(Utf8, StrayBytesAreEscapedAndValidTextIsKept) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x9c\x94 \xf0\x9f\x98\x80"));
  EXPECT_EQ(EscapeInvalidUtf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_FALSE(IsValidUtf8("caf\xe9"));
  EXPECT_EQ(EscapeInvalidUtf8("caf\xe9!"), "caf\\xe9!");
  // A sequence cut short, an overlong form, a surrogate, a value past U+10FFFF.
  EXPECT_EQ(EscapeInvalidUtf8("\xe2\x9c"), "\\xe2\\x9c");
  EXPECT_EQ(EscapeInvalidUtf8("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(EscapeInvalidUtf8("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(EscapeInvalidUtf8("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_TRUE(IsValidUtf8(EscapeInvalidUtf8("\xff\xfe any \x80")));
}

TEST(ShowNul, WritesNulVisiblyAndMarksACut) {
  using namespace std::string_literals;
  EXPECT_EQ(ShowNul("a\0b"s, 10), "a\\0b");
  EXPECT_EQ(ShowNul("abc", 3), "abc");
  EXPECT_EQ(ShowNul("abcd", 3), "abc...");
}

}  // namespace
}  // namespace sr
