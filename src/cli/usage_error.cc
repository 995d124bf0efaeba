// The message for a command line CLI11 refused. CLI11 says "A subcommand is required" for
// `client bogus`, never naming the word the user typed: where a command was expected, the
// unknown word is named with the commands there are.
#include <optional>

#include "cli/cli.h"

namespace sr::cli {
namespace {

// The deepest command the parse chose: `client` for `client bogus`, the app for `bogus`.
const CLI::App* ChosenCommand(const CLI::App& app) {
  const CLI::App* chosen = &app;
  for (auto subs = chosen->get_subcommands(); !subs.empty(); subs = chosen->get_subcommands()) {
    chosen = subs.front();
  }
  return chosen;
}

std::vector<const CLI::App*> Commands(const CLI::App& command) {
  return command.get_subcommands(
      [](const CLI::App* sub) { return !sub->get_name().empty() && !sub->get_disabled(); });
}

std::string CommandNames(const CLI::App& command) {
  std::string names;
  for (const CLI::App* sub : Commands(command)) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
  }
  return names;
}

// The first word the parse could not place that is not an option (an unknown option is left to
// CLI11's own message).
std::optional<std::string> FirstStrayWord(const CLI::App& app) {
  for (const std::string& word : app.remaining(/*recurse=*/true)) {
    if (!word.empty() && word[0] != '-') return word;
  }
  return std::nullopt;
}

}  // namespace

std::string UsageErrorMessage(const CLI::App& app, const CLI::ParseError& error) {
  const CLI::App* command = ChosenCommand(app);
  if (Commands(*command).empty()) return error.what();  // it takes arguments, not commands
  const std::string what = command == &app ? "command" : command->get_name() + " command";
  const std::string list = " (commands: " + CommandNames(*command) + ")";
  if (auto word = FirstStrayWord(app)) return "unknown " + what + " \"" + *word + "\"" + list;
  if (command->get_require_subcommand_min() > 0) return "a " + what + " is required" + list;
  return error.what();
}

}  // namespace sr::cli
