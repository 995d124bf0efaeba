// `client status` as text: one job in detail, or a table of every job.
#include "cli/status_text.h"

#include <google/protobuf/util/time_util.h>
#include <locale.h>
#include <wchar.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/engine.h"  // FormatBytes
#include "util/utf8.h"
#include "util/time.h"

namespace sr::cli {
namespace {

using google::protobuf::util::TimeUtil;

// RFC 3339 in UTC to the millisecond: `2026-12-04T20:58:50.123Z`.
std::string Time(const google::protobuf::Timestamp& t) {
  google::protobuf::Timestamp ms = t;
  ms.set_nanos(t.nanos() / 1000000 * 1000000);
  std::string s = TimeUtil::ToString(ms);
  if (ms.nanos() == 0) s.insert(s.size() - 1, ".000");  // ToString drops a zero fraction
  return s;
}

// The terminal columns of one character: glibc's wcwidth under C.UTF-8, whatever the process's
// own locale (a wide East Asian character takes 2, a combining mark 0); 1 where it cannot say.
size_t Columns(uint32_t code) {
  if (code < 0x80) return 1;
  static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  if (utf8 == static_cast<locale_t>(nullptr)) return 1;
  const locale_t before = ::uselocale(utf8);
  const int w = ::wcwidth(static_cast<wchar_t>(code));
  ::uselocale(before);
  return w < 0 ? 1 : static_cast<size_t>(w);
}

// Columns are counted as a terminal shows them, not in bytes: an id with `é` (2 bytes) is one
// column wider, one with `日` (3 bytes) two. Bytes that are not UTF-8 count one each.
size_t Width(std::string_view s) {
  size_t width = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t code = 0;
    const size_t len = DecodeUtf8(s, i, code);
    width += len == 0 ? 1 : Columns(code);
    i += len == 0 ? 1 : len;
  }
  return width;
}

// `s` followed by spaces up to `width` characters (printf's %-20s counts bytes).
std::string PadRight(const std::string& s, size_t width) {
  const size_t w = Width(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

std::string Took(const proto::Status& s) {
  if (!s.has_start_time() || !s.has_end_time()) return "-";
  return std::to_string(TimeUtil::DurationToMilliseconds(s.end_time() - s.start_time())) + "ms";
}

// One row per step, nested steps indented; what each used in its own columns (contract 8.2).
void PrintSteps(const proto::StepResult& r, int depth) {
  if (depth == 0) {
    std::printf("  %-20s %-10s %5s %8s %8s %10s %5s %4s\n", "STEP", "STATUS", "EXIT", "TIME", "CPU",
                "PEAK MEM", "PIDS", "OOM");
  }
  for (const auto& sub : r.sub_step_results()) {
    std::string name(static_cast<size_t>(2 * depth), ' ');
    name += sub.step().name().empty() ? "(step)" : sub.step().name();
    const auto& u = sub.usage();
    char time[32] = "-", cpu[32] = "-";
    if (u.has_start_time() && u.has_end_time()) {
      auto took = TimeUtil::TimestampToMilliseconds(u.end_time()) -
                  TimeUtil::TimestampToMilliseconds(u.start_time());
      std::snprintf(time, sizeof time, "%.1fs", static_cast<double>(took) / 1000);
    }
    if (u.cpu_user_usec() || u.cpu_system_usec()) {
      std::snprintf(cpu, sizeof cpu, "%.1fs",
                    static_cast<double>(u.cpu_user_usec() + u.cpu_system_usec()) / 1e6);
    }
    std::printf("  %s %-10s %5s %8s %8s %10s %5s %4s\n", PadRight(name, 20).c_str(),
                proto::StepResult::Status_Name(sub.status()).c_str(),
                sub.has_exec_result() ? std::to_string(sub.exec_result().exit_code()).c_str() : "-",
                time, cpu, u.memory_peak_bytes() ? FormatBytes(u.memory_peak_bytes()).c_str() : "-",
                u.pids_peak() ? std::to_string(u.pids_peak()).c_str() : "-",
                u.has_start_time() ? std::to_string(u.oom_kills()).c_str() : "-");
    PrintSteps(sub, depth + 1);
  }
}

// Steps the runner stopped for a reason of their own (OOM kill, own timeout, the deadline
// warning signal): which processes.
void PrintStepTerminations(const proto::StepResult& r) {
  for (const auto& sub : r.sub_step_results()) {
    const auto& t = sub.termination();
    if (sub.has_termination() && (t.reason() == proto::Termination::oom_killed ||
                                  t.reason() == proto::Termination::step_timed_out ||
                                  t.reason() == proto::Termination::deadline_warning)) {
      std::printf("step %s: %s\n", sub.step().name().c_str(),
                  proto::Termination::Reason_Name(t.reason()).c_str());
      for (const auto& p : t.processes()) {
        std::printf("  pid %d %s: %s\n", p.pid(), p.command().c_str(),
                    proto::Termination::ProcessRecord::Ending_Name(p.ending()).c_str());
      }
    }
    PrintStepTerminations(sub);
  }
}

}  // namespace

void PrintJobDetail(const proto::Status& s) {
  std::printf("id:        %s\nstate:     %s\n", s.id().c_str(),
              proto::StepResult::Status_Name(s.status()).c_str());
  if (s.has_error()) {
    std::printf("error:     %s: %s\n", proto::StatusError::ErrorKind_Name(s.error().kind()).c_str(),
                s.error().message().c_str());
  }
  if (s.has_start_time()) std::printf("started:   %s\n", Time(s.start_time()).c_str());
  if (s.has_end_time()) std::printf("ended:     %s\n", Time(s.end_time()).c_str());
  if (s.has_cancel_time()) std::printf("cancelled: %s\n", Time(s.cancel_time()).c_str());
  if (s.result().sub_step_results_size() > 0) {
    std::printf("steps:\n");
    PrintSteps(s.result(), 0);
    PrintStepTerminations(s.result());
  }
  if (s.has_termination()) {
    const auto& t = s.termination();
    std::printf("termination: %s%s, grace %s\n", proto::Termination::Reason_Name(t.reason()).c_str(),
                t.forced() ? " (forced)" : "",
                TimeUtil::ToString(t.grace()).c_str());
    if (t.has_warning_time()) {
      std::printf("  warning: %s at %s\n",
                  t.warning_signal().empty() ? "no signal" : t.warning_signal().c_str(),
                  Time(t.warning_time()).c_str());
    }
    for (const auto& p : t.processes()) {
      // A process only the warning reached says so: "no signal" and then ended_by_signal hid it.
      const std::string sent = !p.signal().empty()           ? p.signal()
                               : !p.warning_signal().empty() ? p.warning_signal() + " (warning)"
                                                             : "no signal";
      std::printf("  pid %d %s: %s -> %s\n", p.pid(), p.command().c_str(), sent.c_str(),
                  proto::Termination::ProcessRecord::Ending_Name(p.ending()).c_str());
    }
  }
}

void PrintJobTable(const proto::StatusResponse& resp) {
  // Columns as wide as their widest cell, so long ids keep the table aligned.
  std::vector<std::array<std::string, 5>> rows{{"ID", "STATE", "STARTED", "TOOK", "MESSAGE"}};
  for (const auto& job : resp.jobs()) {
    rows.push_back({job.id(), proto::StepResult::Status_Name(job.status()),
                    job.has_start_time() ? Time(job.start_time()) : "-", Took(job), job.message()});
  }
  std::array<size_t, 5> width{};
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], Width(row[c]));
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += c + 1 < row.size() ? PadRight(row[c], width[c] + 2) : row[c];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace sr::cli
