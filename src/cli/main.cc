// step-runner: reads step files and runs them, from the command line or as a gRPC service.
//
// main() is a table of contents: parse the command line, run the chosen command, exit with its
// code. Signals, the event loop and the supervisor are set up by each command that needs them.
#include <csignal>
#include <malloc.h>

#include <CLI/CLI.hpp>

#include "cli/cli.h"
#include "cli/switches.h"
#include "util/fd.h"
#include "util/owner.h"
#include "util/signals.h"

int main(int argc, char** argv) {
  // Before anything opens a file: a closed stdout or stderr becomes /dev/null (see fd.h).
  if (sr::Status fds = sr::OpenClosedStandardFds(); !fds.ok()) return sr::cli::Fail(fds.error().message, 1);
  // Before anything reads TMPDIR: a relative one is meant against this cwd (switches.h).
  sr::cli::MakeTempBaseAbsolute();
  // Its own start time, while a file can surely be opened: every owner mark and transit name
  // needs it, and they are made when the fd table may already be full (util/owner.h).
  (void)sr::SelfStartTicks();
  // No fastbins (tcache still serves small sizes): glibc merges every fastbin chunk whenever a
  // request of 1 KiB or more arrives while any is cached, and the runner mixes many small
  // allocations (strings, map nodes) with larger ones (protobuf, buffers) at every step. About
  // 8% of the runner's own CPU per trivial step (docs/performance.md, issue 17).
  ::mallopt(M_MXFAST, 0);
  // A closed stdout (`run … | head`) is an error the job reports and cleans up after, never a
  // death that leaves its temp dir behind. Steps get the default back (spawn.cc resets it).
  sr::SetSignalDisposition(SIGPIPE, SIG_IGN);
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
    return sr::cli::Fail(sr::cli::UsageErrorMessage(app, e), 2);
  }
  if (app.get_subcommands().empty()) {
    std::fputs(app.help().c_str(), stdout);
    return 2;
  }
  return exit_code;
}
