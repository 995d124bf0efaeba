#include "cli/log_follow.h"

#include <limits.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/sync_stream.h>

#include "proto/step.pb.h"
#include "util/result.h"

namespace sr::cli {
namespace {

// Writes every piece, retrying on EINTR and short writes. False on any other error.
bool WriteAllPieces(int fd, std::vector<iovec>& pieces) {
  size_t first = 0;
  while (first < pieces.size()) {
    const int count = static_cast<int>(std::min<size_t>(pieces.size() - first, IOV_MAX));
    ssize_t n = ::writev(fd, pieces.data() + first, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    auto left = static_cast<size_t>(n);
    while (first < pieces.size() && left >= pieces[first].iov_len) left -= pieces[first++].iov_len;
    if (left > 0) {
      pieces[first].iov_base = static_cast<char*>(pieces[first].iov_base) + left;
      pieces[first].iov_len -= left;
    }
  }
  return true;
}

}  // namespace

bool ResponseDataPieces(const std::vector<grpc::Slice>& slices, std::vector<iovec>* out) {
  size_t total = 0;
  for (const auto& s : slices) total += s.size();
  if (total == 0) return true;  // no field at all: empty data
  // The header (tag, varint length) may itself be split across slices.
  unsigned char header[11];
  size_t h = 0;
  for (const auto& s : slices) {
    for (size_t i = 0; i < s.size() && h < sizeof header; ++i) header[h++] = s.begin()[i];
    if (h == sizeof header) break;
  }
  if (header[0] != 0x0a) return false;  // not field 1, length-delimited
  uint64_t length = 0;
  size_t pos = 1;
  for (int shift = 0;; shift += 7) {
    if (pos >= h || shift > 63) return false;
    const unsigned char b = header[pos++];
    length |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  if (length != total - pos) return false;  // more fields, or a repeated one
  size_t skip = pos;
  for (const auto& s : slices) {
    size_t from = std::min(skip, s.size());
    skip -= from;
    if (from < s.size()) {
      out->push_back(iovec{const_cast<uint8_t*>(s.begin() + from), s.size() - from});
    }
  }
  return true;
}

grpc::Status FollowLogsTo(const std::shared_ptr<grpc::Channel>& channel, const std::string& id,
                          int64_t offset, grpc::ClientContext* ctx, int fd) {
  // gRPC allocates a fresh buffer for every read from the socket; the default malloc gives large
  // ones back to the kernel, and the next one pays its page faults again (200 MiB: 5-10 k minor
  // faults by default, 2.5-6.5 k with these). This process only streams.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 128 << 20);
  proto::FollowLogsRequest req;
  req.set_id(id);
  req.set_offset(offset);
  // The generated stub would parse each response into a string; reading the raw ByteBuffer
  // writes the bytes from gRPC's own buffers (the reader is the same one the stub would build).
  static const grpc::internal::RpcMethod kMethod("/proto.StepRunner/FollowLogs",
                                                 grpc::internal::RpcMethod::SERVER_STREAMING);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel.get(), kMethod, ctx,
                                                                   req));
  grpc::ByteBuffer message;
  std::vector<grpc::Slice> slices;
  std::vector<iovec> pieces;
  while (reader->Read(&message)) {
    slices.clear();
    pieces.clear();
    std::string parsed;  // only for a message of another shape
    if (!message.Dump(&slices).ok() || !ResponseDataPieces(slices, &pieces)) {
      std::string wire;
      for (const auto& s : slices) wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
      proto::FollowLogsResponse response;
      if (!response.ParseFromString(wire)) {
        // Nothing after a message we cannot read may be written: stop the stream here.
        ctx->TryCancel();
        (void)reader->Finish();
        return grpc::Status(grpc::StatusCode::INTERNAL, "malformed FollowLogsResponse");
      }
      parsed = std::move(*response.mutable_data());
      pieces.assign(1, iovec{parsed.data(), parsed.size()});
    }
    if (!WriteAllPieces(fd, pieces)) {
      // The reader went away (`client logs ID | head`) or the disk is full. The log stays on the
      // server until Close, so nothing is lost by stopping: end the stream now rather than read
      // the rest of the job's life into nothing.
      const int err = errno;
      ctx->TryCancel();
      (void)reader->Finish();
      const std::string where = fd == 1 ? "stdout" : "fd " + std::to_string(fd);
      return grpc::Status(grpc::StatusCode::ABORTED,
                          ErrnoError("writing the job log to " + where, err).message);
    }
  }
  return reader->Finish();
}

}  // namespace sr::cli
