// `client status` as text (contract section 5): what an operator reads; `--json` prints the
// messages as they are instead.
#pragma once

#include "proto/step.pb.h"

namespace sr::cli {

/// One job: its state, error, times, a row per step with what it used, and its termination
/// record (the effective grace, the warning, each process's signal and ending).
void PrintJobDetail(const proto::Status& job);

/// Every job, a row each: id, state, start, how long it took, message.
void PrintJobTable(const proto::StatusResponse& response);

}  // namespace sr::cli
