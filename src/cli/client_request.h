// The request `client run` sends, built from its command line: the step file read and checked
// as the service would check it, so that an error names the file or the flag the user typed
// rather than the proto field or `<request>`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.h"
#include "proto/step.pb.h"
#include "util/result.h"

namespace sr::cli {

/// What the `client` commands take from their command line.
struct ClientArgs {
  std::string socket;
  // run
  std::string file, id, work_dir;
  JobFlags flags;  // timing and RunRequest.resources
  std::vector<std::string> env, job, masked_job;
  bool follow = false;
  // cancel / status / logs
  bool force = false, json = false;
  int64_t offset = 0;
};

/// The RunRequest for `client run`: the step file's text, work dir, env, job variables, timing
/// and limits; an error naming the file or flag.
Result<proto::RunRequest> BuildRunRequest(const ClientArgs& a);

/// `message` about the text this client sent, with the service's `<request>:LINE` places
/// naming `file` instead.
std::string NameTheFile(std::string message, const std::string& file);

/// An error naming `what` when `value` is not UTF-8 (gRPC strings must be).
Status RequireUtf8(std::string_view value, const std::string& what);

}  // namespace sr::cli
