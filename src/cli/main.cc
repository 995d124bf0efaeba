// step-runner: reads step files and runs them, from the command line or as a gRPC service.
//
// main() is a table of contents: parse the command line, run the chosen command, exit with its
// code. Signals, the event loop and the supervisor are set up by each command that needs them.
#include <CLI/CLI.hpp>

#include "cli/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"step-runner: runs CI steps; graceful cancellation that leaves nothing behind"};
  app.require_subcommand(0, 1);
  int exit_code = 0;
  sr::cli::RegisterCommands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return sr::cli::Fail(e.what(), 2);
  }
  if (app.get_subcommands().empty()) {
    std::fputs(app.help().c_str(), stdout);
    return 2;
  }
  return exit_code;
}
