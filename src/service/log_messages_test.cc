// FollowLogs messages shared by followers at the same offset: a real job log file, the messages
// as gRPC would send them.
#include "service/log_messages.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "util/tempdir.h"

namespace sr::service {
namespace {

// The bytes gRPC would put on the wire for `buffer`.
std::string Wire(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// FollowLogsResponse{data} as protobuf encodes it.
std::string Encoded(const std::string& data) {
  std::string out = "\x0a";
  for (uint64_t v = data.size();; v >>= 7) {
    out.push_back(static_cast<char>((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
    if (v <= 0x7f) break;
  }
  return out + data;
}

class LogMessagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("log-messages-test-");
    ASSERT_TRUE(dir.ok()) << dir.error().message;
    dir_ = std::move(*dir);
    auto log = JobLog::Create(dir_.path() + "/logs");
    ASSERT_TRUE(log.ok()) << log.error().message;
    log_ = std::shared_ptr<JobLog>(std::move(*log));
    // Every byte tells where it is, so a message of the wrong piece cannot pass for the right one.
    for (int i = 0; content_.size() < (3u << 20); ++i) content_ += std::to_string(i) + ",";
    ASSERT_TRUE(log_->Append(content_).ok());
    messages_ = std::make_shared<LogMessages>(log_);
  }

  TempDir dir_;
  std::shared_ptr<JobLog> log_;
  std::string content_;
  std::shared_ptr<LogMessages> messages_;
};

TEST_F(LogMessagesTest, FollowersAtTheSameOffsetShareTheMessageWhileOneSendsIt) {
  auto first = messages_->Read(65536, 1 << 20);
  ASSERT_TRUE(first.ok()) << first.error().message;
  grpc::ByteBuffer sent = std::move(*first).Buffer();  // in flight on one stream

  // Only a message that starts where the follower is and fits what it may take is shared.
  EXPECT_FALSE(messages_->Find(65536 + 1, 1 << 20));
  EXPECT_FALSE(messages_->Find(65536, (1 << 20) - 1));
  LogMessages::Hold shared = messages_->Find(65536, 2 << 20);
  ASSERT_TRUE(shared);
  EXPECT_EQ(shared.size(), size_t{1} << 20);
  grpc::ByteBuffer also = std::move(shared).Buffer();
  const std::string expected = Encoded(content_.substr(65536, 1 << 20));
  EXPECT_EQ(Wire(sent), expected);
  EXPECT_EQ(Wire(also), expected);

  // Nothing is kept once no stream sends it: the next follower there reads again.
  sent.Clear();
  EXPECT_TRUE(messages_->Find(65536, 1 << 20));  // `also` still holds it
  also.Clear();
  EXPECT_FALSE(messages_->Find(65536, 1 << 20));
}

TEST_F(LogMessagesTest, RecycledBlocksCarryEachMessagesOwnBytesAndLength) {
  // Sizes around the pool's classes and varint lengths; each read after the last was released,
  // so pooled blocks are reused with other sizes and offsets.
  int64_t offset = 0;
  for (size_t n : {size_t{1}, size_t{127}, size_t{128}, size_t{32767}, size_t{32768},
                   size_t{65536}, size_t{65537}, size_t{1} << 20, size_t{700000}, size_t{65536},
                   size_t{1} << 20, size_t{40000}}) {
    auto m = messages_->Read(offset, n);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->size(), n);
    grpc::ByteBuffer b = std::move(*m).Buffer();
    EXPECT_EQ(Wire(b), Encoded(content_.substr(static_cast<size_t>(offset), n))) << "n " << n;
    offset += static_cast<int64_t>(n);
  }
}

TEST_F(LogMessagesTest, ReadingPastTheLogIsAnError) {
  auto m = messages_->Read(static_cast<int64_t>(content_.size()) - 10, 20);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("shorter than its size"), std::string::npos) << m.error().message;
  EXPECT_FALSE(messages_->Find(static_cast<int64_t>(content_.size()) - 10, 20));
}

}  // namespace
}  // namespace sr::service
