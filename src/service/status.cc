#include "service/status.h"

#include "service/service.h"

namespace sr::service {

grpc::Status ToGrpcStatus(const Error& error) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (error.kind) {
    case Error::Kind::kInvalid: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case Error::Kind::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case Error::Kind::kCancelled: code = grpc::StatusCode::CANCELLED; break;
    case Error::Kind::kTimedOut: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
    case Error::Kind::kInternal: code = grpc::StatusCode::INTERNAL; break;
    case Error::Kind::kExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case Error::Kind::kFailed: code = grpc::StatusCode::UNKNOWN; break;
  }
  return grpc::Status(code, error.message);
}

Error JobNotFound(const std::string& id) {
  return Error{Error::Kind::kNotFound, "no job with id \"" + id + "\""};
}

grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "step-runner is shutting down");
}

Status ValidateJobId(const std::string& id) {
  if (id.empty()) return InvalidError("invalid job id: empty");
  if (id.size() > 128) {
    return InvalidError("invalid job id: longer than 128 bytes (" + std::to_string(id.size()) + ")");
  }
  if (id.find('/') != std::string::npos) return InvalidError("invalid job id \"" + id + "\": contains '/'");
  if (id.find('\0') != std::string::npos) return InvalidError("invalid job id: contains NUL");
  if (id.find("..") != std::string::npos) return InvalidError("invalid job id \"" + id + "\": contains \"..\"");
  return Ok();
}

}  // namespace sr::service
