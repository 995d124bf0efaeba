// `client run`'s request from its command line (see client_request.h).
#include "cli/client_request.h"

#include <cctype>
#include <filesystem>
#include <utility>

#include "stepfile/stepfile.h"
#include "util/time.h"
#include "util/utf8.h"

namespace sr::cli {

namespace {

Result<std::pair<std::string, std::string>> SplitPair(const std::string& kv, const char* flag) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidError(std::string(flag) + ": expected KEY=VALUE, got \"" + kv + "\"");
  }
  return std::make_pair(kv.substr(0, eq), kv.substr(eq + 1));
}

void SetDuration(Duration d, google::protobuf::Duration* out) {
  out->set_seconds(d.count() / 1000000000);
  out->set_nanos(static_cast<int32_t>(d.count() % 1000000000));
}

// The timing flags, checked here as the service would check them, so that an error names the
// flag (`--warn-before needs --timeout`), not the proto field the service would name.
Status SetTiming(const JobFlags& f, proto::RunRequest& req) {
  SR_ASSIGN_OR_RETURN(JobTiming t, TimingFromFlags(f));
  if (t.grace) SetDuration(*t.grace, req.mutable_graceful_exit_timeout());
  if (!f.timeout.empty()) SetDuration(t.timeout, req.mutable_timeout());
  if (!f.warn_before.empty()) SetDuration(t.warn_before, req.mutable_warn_before());
  req.set_warn_signal(f.warn_signal);  // as typed: the service parses it the same way
  return Ok();
}

}  // namespace

// The service names the step text it was sent `<request>` (it has no file name): in what it says
// about the text this client sent, the path the user gave takes its place. Only a place
// (`<request>:` and a line number) is replaced, not the word anywhere.
std::string NameTheFile(std::string message, const std::string& file) {
  const std::string label = std::string(stepfile::kRequestSource) + ":";
  for (size_t at = message.find(label); at != std::string::npos; at = message.find(label, at)) {
    const size_t after = at + label.size();
    if (after < message.size() && std::isdigit(static_cast<unsigned char>(message[after]))) {
      message.replace(at, label.size(), file + ":");
      at += file.size() + 1;
    } else {
      at = after;
    }
  }
  return message;
}

// gRPC strings are UTF-8: a request holding other bytes cannot even be sent (protobuf refuses
// it with a log line and the call fails without a message), so they are caught here.
Status RequireUtf8(std::string_view value, const std::string& what) {
  const size_t bad = FirstInvalidUtf8(value);
  if (bad == value.size()) return Ok();
  return InvalidError(what + ": not UTF-8 (byte " + ByteName(static_cast<unsigned char>(value[bad])) +
                      " at offset " + std::to_string(bad) + "); the service takes UTF-8 text only");
}

Result<proto::RunRequest> BuildRunRequest(const ClientArgs& a) {
  proto::RunRequest req;
  auto text = stepfile::ReadStepText(a.file, /*regular_only=*/false);  // the server's limit
  if (!text.ok()) return InvalidError(text.error().message);
  if (const size_t bad = FirstInvalidUtf8(*text); bad != text->size()) {
    // The server's words for it (stepfile's text check), with the file's name.
    return InvalidError(stepfile::TextPosition(*text, bad, a.file) + ": invalid UTF-8 (byte " +
                        ByteName(static_cast<unsigned char>((*text)[bad])) +
                        "): step text must be UTF-8");
  }
  req.set_id(a.id);
  req.set_steps(*text);
  std::error_code ec;
  req.set_work_dir(a.work_dir.empty() ? std::filesystem::current_path(ec).string()
                                      : std::filesystem::absolute(a.work_dir, ec).string());
  for (const auto& kv : a.env) {
    SR_ASSIGN_OR_RETURN(auto p, SplitPair(kv, "--env"));
    SR_RETURN_IF_ERROR(RequireUtf8(kv, "--env " + EscapeInvalidUtf8(p.first)));
    (*req.mutable_env())[p.first] = p.second;
  }
  for (const auto* list : {&a.job, &a.masked_job}) {
    for (const auto& kv : *list) {
      std::pair<std::string, std::string> p;
      if (list == &a.masked_job && kv.find('=') == std::string::npos) {
        SR_ASSIGN_OR_RETURN(p.second, ValueFromEnv(kv, "--masked-job"));  // `--masked-job KEY`
        p.first = kv;
      } else {
        SR_ASSIGN_OR_RETURN(p, SplitPair(kv, list == &a.job ? "--job" : "--masked-job"));
      }
      SR_RETURN_IF_ERROR(RequireUtf8(p.first + "=" + p.second,
                                     std::string(list == &a.job ? "--job " : "--masked-job ") +
                                         EscapeInvalidUtf8(p.first)));
      proto::Variable* v = req.mutable_job()->add_variables();
      v->set_key(p.first);
      v->set_value(p.second);
      v->set_masked(list == &a.masked_job);
    }
  }
  SR_RETURN_IF_ERROR(SetTiming(a.flags, req));
  SR_RETURN_IF_ERROR(RequireUtf8(req.work_dir(), "the work dir " + EscapeInvalidUtf8(req.work_dir())));
  SR_ASSIGN_OR_RETURN(ResourceLimits limits, LimitsFromFlags(a.flags));
  if (limits.any()) {
    req.mutable_resources()->set_memory_bytes(limits.memory_bytes);
    req.mutable_resources()->set_pids(limits.pids);
    req.mutable_resources()->set_cpus(limits.cpus);
  }
  return req;
}

}  // namespace sr::cli
