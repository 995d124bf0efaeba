// The service edge: the one place where an Error becomes a grpc::Status (contract section 1).
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "util/result.h"

namespace sr::service {

/// kInvalid → INVALID_ARGUMENT, kNotFound → NOT_FOUND, kCancelled → CANCELLED,
/// kTimedOut → DEADLINE_EXCEEDED, kInternal → INTERNAL, kFailed → UNKNOWN (as the Go service).
grpc::Status ToGrpcStatus(const Error& error);

/// NOT_FOUND `no job with id "<id>"`.
Error JobNotFound(const std::string& id);

/// UNAVAILABLE: the server is shutting down.
grpc::Status ShuttingDown();

}  // namespace sr::service
