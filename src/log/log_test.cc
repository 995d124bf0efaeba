#include "log/log.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/tempdir.h"

namespace sr {
namespace {

class JobLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("log-test-");
    ASSERT_TRUE(dir.ok()) << dir.error().message;
    dir_ = std::move(*dir);
    auto log = JobLog::Create(dir_.path() + "/logs");
    ASSERT_TRUE(log.ok()) << log.error().message;
    log_ = std::move(*log);
  }

  // Reads everything from `offset` the way a follower does: chunk by chunk.
  std::string ReadFrom(int64_t offset, size_t chunk = 65536) {
    std::string out;
    for (;;) {
      auto got = log_->ReadAt(offset, chunk);
      EXPECT_TRUE(got.ok());
      if (!got.ok() || got->empty()) return out;
      offset += static_cast<int64_t>(got->size());
      out += *got;
    }
  }

  TempDir dir_;
  std::unique_ptr<JobLog> log_;
};

TEST_F(JobLogTest, KeepsBytesExactlyIncludingEmptyLinesAndNoTrailingNewline) {
  const std::string text = "a\n\n\nb\r\n\n  \nlast line without newline";
  ASSERT_TRUE(log_->Append(text.substr(0, 5)).ok());
  ASSERT_TRUE(log_->Append(text.substr(5)).ok());
  EXPECT_EQ(log_->size(), static_cast<int64_t>(text.size()));
  EXPECT_EQ(ReadFrom(0), text);
  EXPECT_EQ(ReadFile(log_->path()).value(), text);
}

TEST_F(JobLogTest, OneMegabyteLineInSmallChunks) {
  std::string line(1 << 20, 'x');
  for (size_t i = 0; i < line.size(); i += 97) line[i] = static_cast<char>('a' + i % 26);
  line += "\n";
  ASSERT_TRUE(log_->Append(line).ok());
  EXPECT_EQ(ReadFrom(0, 4096), line);
}

TEST_F(JobLogTest, ResumesFromAnyOffset) {
  const std::string text = "first\nsecond\n\nthird";
  ASSERT_TRUE(log_->Append(text).ok());
  for (size_t off = 0; off <= text.size(); ++off) {
    EXPECT_EQ(ReadFrom(static_cast<int64_t>(off), 3), text.substr(off)) << off;
  }
  EXPECT_EQ(ReadFrom(static_cast<int64_t>(text.size()) + 10), "");
  EXPECT_FALSE(log_->ReadAt(-1, 10).ok());
}

TEST_F(JobLogTest, FileIsPrivate) {
  struct stat st {};
  ASSERT_EQ(::stat(log_->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(JobLogTest, FollowersAreNotifiedOnAppendAndClose) {
  int a = 0, b = 0;
  auto ida = log_->Follow([&] { ++a; });
  log_->Follow([&] { ++b; });
  ASSERT_TRUE(log_->Append("x").ok());
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 1);
  log_->Unfollow(ida);
  ASSERT_TRUE(log_->Append("y").ok());
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_FALSE(log_->closed());
  log_->Close();
  EXPECT_TRUE(log_->closed());
  EXPECT_EQ(b, 3);
  log_->Close();  // idempotent: no second notification
  EXPECT_EQ(b, 3);
  ASSERT_TRUE(log_->Append("ignored").ok());
  EXPECT_EQ(log_->size(), 2);
  EXPECT_EQ(b, 3);
}

TEST_F(JobLogTest, FollowerMayUnfollowItselfAndOthersDuringNotification) {
  std::vector<std::string> calls;
  JobLog::FollowerId first = 0, second = 0;
  first = log_->Follow([&] {
    calls.push_back("first");
    log_->Unfollow(first);
    log_->Unfollow(second);
  });
  second = log_->Follow([&] { calls.push_back("second"); });
  ASSERT_TRUE(log_->Append("x").ok());
  ASSERT_TRUE(log_->Append("y").ok());
  EXPECT_EQ(calls, std::vector<std::string>{"first"});
  EXPECT_EQ(log_->followers(), 0u);
}

// The splice path of a step whose output is not masked: bytes go from the pipe into the file at
// its end, interleaved with appended ones, and followers hear of them as of an Append.
TEST_F(JobLogTest, MoveFromAPipeAppendsInOrderAndNotifies) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  int notified = 0;
  log_->Follow([&] { ++notified; });
  ASSERT_TRUE(log_->Append("engine line\n").ok());
  EXPECT_EQ(log_->MoveFrom(read_end.get(), 1 << 20).kind, OutputMove::Kind::kEmpty);
  std::string chunk(100000, 'x');
  for (size_t i = 0; i < chunk.size(); i += 13) chunk[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(WriteAll(write_end.get(), chunk.substr(0, 60000)).ok());
  OutputMove m = log_->MoveFrom(read_end.get(), 1 << 20);
  ASSERT_EQ(m.kind, OutputMove::Kind::kMoved);
  EXPECT_EQ(m.bytes, 60000u);
  ASSERT_TRUE(log_->Append("between\n").ok());
  ASSERT_TRUE(WriteAll(write_end.get(), chunk.substr(60000)).ok());
  write_end.Reset();
  size_t moved = 0;
  for (;;) {
    m = log_->MoveFrom(read_end.get(), 4096);  // at most `max` per call
    if (m.kind != OutputMove::Kind::kMoved) break;
    EXPECT_LE(m.bytes, 4096u);
    moved += m.bytes;
  }
  EXPECT_EQ(m.kind, OutputMove::Kind::kEnd);
  EXPECT_EQ(moved, 40000u);
  const std::string expected = "engine line\n" + chunk.substr(0, 60000) + "between\n" + chunk.substr(60000);
  EXPECT_EQ(log_->size(), static_cast<int64_t>(expected.size()));
  EXPECT_TRUE(ReadFrom(0) == expected);
  EXPECT_TRUE(ReadFile(log_->path()).value() == expected);
  EXPECT_GE(notified, 3);
  log_->Close();
  EXPECT_EQ(log_->MoveFrom(read_end.get(), 4096).kind, OutputMove::Kind::kRefused);
}

TEST_F(JobLogTest, ReadsStillWorkAfterTheFileIsRemoved) {
  ASSERT_TRUE(log_->Append("kept\n").ok());
  ASSERT_EQ(::unlink(log_->path().c_str()), 0);
  EXPECT_EQ(ReadFrom(0), "kept\n");
}

TEST_F(JobLogTest, WriteIsTheOutputSinkShape) {
  ASSERT_TRUE(log_->Write(OutputStream::kStdout, "out ").ok());
  ASSERT_TRUE(log_->Write(OutputStream::kStderr, "err ").ok());
  ASSERT_TRUE(log_->Write(OutputStream::kStdout, "out\n").ok());
  EXPECT_EQ(ReadFrom(0), "out err out\n");
}

}  // namespace
}  // namespace sr

namespace sr {
namespace {

TEST(JobLogErrors, AWriteErrorReachesTheCaller) {
  // /dev/full: every write fails with ENOSPC, as on a full disk.
  auto log = JobLog::Create("/dev/full");
  ASSERT_TRUE(log.ok()) << log.error().message;
  Status written = (*log)->Write(OutputStream::kStdout, "lost");
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.error().message.find("writing job log /dev/full"), std::string::npos)
      << written.error().message;
  EXPECT_EQ((*log)->size(), 0);  // nothing counted that did not reach the file
}

}  // namespace
}  // namespace sr
