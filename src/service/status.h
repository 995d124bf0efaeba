// The service edge: the one place where an Error becomes a grpc::Status (contract section 1).
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "proto/step.pb.h"
#include "util/result.h"

namespace sr::service {

/// kInvalid → INVALID_ARGUMENT, kNotFound → NOT_FOUND, kCancelled → CANCELLED,
/// kTimedOut → DEADLINE_EXCEEDED, kInternal → INTERNAL, kFailed → UNKNOWN (as the Go service).
grpc::Status ToGrpcStatus(const Error& error);

/// NOT_FOUND `no job with id "<id>"`.
Error JobNotFound(const std::string& id);

/// Cuts large values of `status` (strings, value lists and structs, with a marker saying how much
/// was cut) until its encoding is at most `limit` bytes. Status(id) uses 3.5 MiB: the answer
/// then fits gRPC's default 4 MiB receive limit.
void FitStatus(proto::Status* status, size_t limit);
inline constexpr size_t kStatusLimit = 3584u << 10;

/// UNAVAILABLE: the server is shutting down.
grpc::Status ShuttingDown();

}  // namespace sr::service
