#include "cli/status_text.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "util/utf8.h"

namespace sr::cli {
namespace {

// The column (in characters) where `word` starts on each line that has it.
std::vector<size_t> ColumnsOf(const std::string& text, const std::string& word) {
  std::vector<size_t> columns;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t at = line.find(word);
    if (at == std::string::npos) continue;
    size_t column = 0;
    for (size_t i = 0; i < at; ++column) {
      uint32_t code = 0;
      const size_t len = DecodeUtf8(line, i, code);
      i += len == 0 ? 1 : len;
    }
    columns.push_back(column);
  }
  return columns;
}

// `client status` lines its columns up by characters: ids with multi-byte UTF-8 characters
// (`é` is 2 bytes, `✓` 3) pushed their rows' later columns right by the extra bytes.
TEST(StatusTable, ColumnsAlignByCharactersNotBytes) {
  proto::StatusResponse resp;
  for (const char* id : {"plain-job", "café-job", "✓✓-ok-job"}) {
    proto::Status* job = resp.add_jobs();
    job->set_id(id);
    job->set_status(proto::StepResult::failure);
    job->set_message("boom");
  }
  testing::internal::CaptureStdout();
  PrintJobTable(resp);
  const std::string out = testing::internal::GetCapturedStdout();
  const std::vector<size_t> state = ColumnsOf(out, "failure");
  ASSERT_EQ(state.size(), 3u) << out;
  EXPECT_EQ(state[0], state[1]) << out;
  EXPECT_EQ(state[0], state[2]) << out;
  EXPECT_EQ(ColumnsOf(out, "STATE"), std::vector<size_t>{state[0]}) << out;
  const std::vector<size_t> message = ColumnsOf(out, "boom");
  ASSERT_EQ(message.size(), 3u) << out;
  EXPECT_EQ(message[0], message[1]) << out;
  EXPECT_EQ(message[0], message[2]) << out;
}

// Wide East Asian characters take two columns on a terminal: an id of two of them and `-job` is
// as wide as `abcd-job`, and both rows get the same padding (it counted them as one column each).
TEST(StatusTable, WideCharactersTakeTwoColumns) {
  proto::StatusResponse resp;
  for (const char* id : {"abcd-job", "日本-job"}) {
    proto::Status* job = resp.add_jobs();
    job->set_id(id);
    job->set_status(proto::StepResult::failure);
  }
  testing::internal::CaptureStdout();
  PrintJobTable(resp);
  const std::string out = testing::internal::GetCapturedStdout();
  auto padding_after = [&](const std::string& id) {
    const size_t at = out.find(id);
    if (at == std::string::npos) return std::string::npos;
    const size_t end = at + id.size();
    return out.find_first_not_of(' ', end) - end;
  };
  ASSERT_NE(padding_after("abcd-job"), std::string::npos) << out;
  EXPECT_EQ(padding_after("abcd-job"), padding_after("日本-job")) << out;
}

}  // namespace
}  // namespace sr::cli
