#include "cli/log_follow.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/step.pb.h"

namespace sr::cli {
namespace {

// A FollowLogsResponse serialised by protobuf, cut into slices at `cuts`.
std::vector<grpc::Slice> Sliced(const std::string& data, std::vector<size_t> cuts) {
  proto::FollowLogsResponse r;
  r.set_data(data);
  const std::string wire = r.SerializeAsString();
  cuts.push_back(wire.size());
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  for (size_t to : cuts) {
    slices.emplace_back(wire.data() + from, to - from);
    from = to;
  }
  return slices;
}

std::string Joined(const std::vector<iovec>& pieces) {
  std::string out;
  for (const auto& p : pieces) out.append(static_cast<const char*>(p.iov_base), p.iov_len);
  return out;
}

TEST(ResponseDataPieces, DataIsFoundWhereverTheSlicesAreCut) {
  std::string data(300000, 'x');  // a three-byte length
  for (size_t i = 0; i < data.size(); i += 7) data[i] = static_cast<char>('a' + i % 26);
  for (std::vector<size_t> cuts : {std::vector<size_t>{}, {1}, {2}, {3}, {4}, {1, 2, 3}, {5, 16384, 200000}}) {
    std::vector<iovec> pieces;
    const auto slices = Sliced(data, cuts);  // the pieces point into them
    ASSERT_TRUE(ResponseDataPieces(slices, &pieces));
    EXPECT_EQ(Joined(pieces), data);
  }
}

TEST(ResponseDataPieces, EmptyMessageIsEmptyData) {
  std::vector<iovec> pieces;
  EXPECT_TRUE(ResponseDataPieces({}, &pieces));
  EXPECT_TRUE(pieces.empty());
  const auto slices = Sliced("", {});
  EXPECT_TRUE(ResponseDataPieces(slices, &pieces));  // proto3 leaves the field out
  EXPECT_EQ(Joined(pieces), "");
}

TEST(ResponseDataPieces, OtherShapesAreLeftToTheParser) {
  std::vector<iovec> pieces;
  // An unknown field after the data, and the data field twice (the last one wins in protobuf).
  const std::string extra("\x0a\x03" "abc" "\x10\x01", 7);
  EXPECT_FALSE(ResponseDataPieces({grpc::Slice(extra)}, &pieces));
  EXPECT_FALSE(ResponseDataPieces({grpc::Slice(std::string("\x0a\x01" "a" "\x0a\x01" "b", 6))}, &pieces));
  EXPECT_FALSE(ResponseDataPieces({grpc::Slice(std::string("\x12\x01" "a", 3))}, &pieces));
  EXPECT_FALSE(ResponseDataPieces({grpc::Slice(std::string("\x0a\xff\xff", 3))}, &pieces));  // truncated length
  EXPECT_TRUE(pieces.empty());
}

}  // namespace
}  // namespace sr::cli
