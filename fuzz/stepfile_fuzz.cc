// Step-file loader: ParseStepFile and ParseInvocationList on arbitrary bytes. Both must return
// (never throw, crash, recurse without bound or hang) and every error must be an invalid-input
// error naming the source. A text that parses must parse the same way again (no hidden state).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "stepfile/stepfile.h"

using sr::Error;
using sr::fuzz::Show;

namespace {

template <class R>
void CheckError(const R& r, std::string_view text) {
  if (r.ok()) return;
  FUZZ_CHECK(r.error().kind == Error::Kind::kInvalid,
             "error kind " + std::to_string(static_cast<int>(r.error().kind)) + " for " + Show(text));
  FUZZ_CHECK(r.error().message.rfind("f.yml", 0) == 0,
             "error does not name the source: " + Show(r.error().message));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto file = sr::stepfile::ParseStepFile(text, "f.yml");
  CheckError(file, text);
  if (file.ok()) {
    const auto& def = file->definition;
    FUZZ_CHECK(file->source == "f.yml", "source");
    if (def.kind == sr::stepfile::Definition::Kind::kExec) {
      FUZZ_CHECK(!def.command.empty(), "an exec definition without a command parsed");
      FUZZ_CHECK(def.run.empty() && def.finally.empty(), "exec with run/finally items");
    }
    auto again = sr::stepfile::ParseStepFile(text, "f.yml");
    FUZZ_CHECK(again.ok() && again->definition.run.size() == def.run.size() &&
                   again->spec.inputs.size() == file->spec.inputs.size(),
               "parsing the same text twice differs: " + Show(text));
  }

  auto list = sr::stepfile::ParseInvocationList(text, "f.yml");
  CheckError(list, text);
  if (list.ok()) {
    for (const auto& inv : *list) {
      FUZZ_CHECK(!inv.step.filename.empty() ||
                     inv.step.protocol == sr::stepfile::Reference::Protocol::kDynamic,
                 "an invocation with an empty step file name: " + Show(text));
    }
  }
  return 0;
}
