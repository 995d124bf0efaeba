// The client's side of FollowLogs: the job log from an offset to a file descriptor, each message
// written where gRPC received it (no protobuf copy), one writev per message.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace sr::cli {

/// The pieces of `data` in a FollowLogsResponse in wire form spread over `slices`, appended to
/// `out` (pointing into the slices). False if the message has any other shape than the one field
/// (an empty message is fine): the caller then parses it as a message.
bool ResponseDataPieces(const std::vector<grpc::Slice>& slices, std::vector<iovec>* out);

/// Streams the job log of `id` from `offset` to `fd` until the job has ended (or the stream
/// fails: its status). A write error on `fd` (a reader that went away, a full disk) ends the
/// stream at once: ABORTED, "writing the job log to stdout: <reason>". The job goes on.
grpc::Status FollowLogsTo(const std::shared_ptr<grpc::Channel>& channel, const std::string& id,
                          int64_t offset, grpc::ClientContext* ctx, int fd);

}  // namespace sr::cli
