// Command registration: `run`, `ci`, `bootstrap`, `version` (and the service commands, which
// register themselves in service_commands.cc).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cli/cli.h"
#include "cli/local_run.h"
#include "engine/engine.h"
#include "stepfile/stepfile.h"
#include "util/fd.h"

namespace sr::cli {

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "step-runner: %s\n", message.c_str());
  return code;
}

Result<std::string> ValueFromEnv(const std::string& key, const std::string& flag) {
  const char* value = key.empty() ? nullptr : std::getenv(key.c_str());
  if (value == nullptr) {
    return InvalidError(flag + " " + key + ": environment variable " + key + " is not set");
  }
  return std::string(value);
}

namespace {

Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& items,
                                                      const std::string& flag,
                                                      bool value_from_env = false) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    // Accept both repeated flags and Go's comma-separated `k=v,k2=v2`, which is one CSV
    // record: `"who=a,b"` is one pair whose value has a comma.
    auto fields = stepfile::SplitCsvRecord(item);
    if (!fields.ok()) return InvalidError(flag + ": " + fields.error().message + " in \"" + item + "\"");
    for (const std::string& kv : *fields) {
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      if (eq == std::string::npos && value_from_env) {
        // `--masked-job KEY`: the secret comes from the runner's environment, so it need not
        // be on any command line (where every local user can read it).
        SR_ASSIGN_OR_RETURN(out[kv], ValueFromEnv(kv, flag));
        continue;
      }
      if (eq == std::string::npos || eq == 0) {
        return InvalidError(flag + ": expected KEY=VALUE, got \"" + kv + "\"");
      }
      out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  return out;
}

bool HasPrefix(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// Our stdout and stderr are one file (`>log 2>&1`, one terminal): steps then get one pipe for
// both, so the file keeps the order they wrote in.
bool StdoutIsStderr() {
  struct stat out {}, err {};
  return ::fstat(1, &out) == 0 && ::fstat(2, &err) == 0 && out.st_dev == err.st_dev &&
         out.st_ino == err.st_ino;
}

std::string Cwd() {
  std::error_code ec;
  return std::filesystem::current_path(ec).string();
}

struct RunArgs {
  std::string ref, file;
  std::string git_url, git_rev, git_dir;
  std::string oci_registry, oci_repository, oci_tag, oci_dir, oci_filename;
  std::string text_proto_file;
  std::vector<std::string> inputs, env, job, masked_job;
  RunFlags flags;
};

int RunCommand(const RunArgs& a) {
  LocalRunRequest req;
  req.flags = a.flags;
  req.work_dir = Cwd();
  req.default_results_file = "step-results.json";
  auto inputs = ParsePairs(a.inputs, "--inputs");
  auto env = ParsePairs(a.env, "--env");
  auto job = ParsePairs(a.job, "--job");
  auto masked = ParsePairs(a.masked_job, "--masked-job", /*value_from_env=*/true);
  for (auto* r : {&inputs, &env, &job, &masked}) {
    if (!r->ok()) return Fail(r->error().message, 2);
  }
  if (!a.text_proto_file.empty()) {
    return Fail("--text-proto-step-file is not supported (write the step as YAML and use -f FILE)", 2);
  }
  const bool oci = !a.oci_registry.empty() || !a.oci_repository.empty() || !a.oci_tag.empty() ||
                   !a.oci_dir.empty() || !a.oci_filename.empty();
  if (!a.file.empty()) {
    if (!a.ref.empty() || !a.git_url.empty() || oci) {
      return Fail("give either -f FILE or a step reference", 2);
    }
    // Bounded: `-f /dev/stdin` is fine, `-f /dev/zero` is the size error, not an endless read.
    // `-f -` is standard input; its relative references resolve against the cwd.
    const bool from_stdin = a.file == "-";
    auto text = stepfile::ReadStepText(from_stdin ? "/dev/stdin" : a.file, /*regular_only=*/false);
    if (!text.ok()) return Fail(text.error().message, 2);
    auto parsed = stepfile::ParseStepFile(*text, from_stdin ? "<stdin>" : a.file);
    if (!parsed.ok()) return Fail(parsed.error().message, 2);
    req.root = std::move(*parsed);
    std::string dir = from_stdin ? "." : std::filesystem::path(a.file).parent_path().string();
    req.root_step_dir = dir.empty() ? "." : dir;
    for (const auto& [k, v] : *inputs) {
      auto decl = req.root.spec.inputs.find(k);
      if (decl == req.root.spec.inputs.end()) {
        req.root_inputs[k] = stepfile::GuessScalar(v);  // refused by the engine, by name
        continue;
      }
      auto typed = stepfile::ValueFromText(decl->second.type, v);
      if (!typed.ok()) return Fail("--inputs: input \"" + k + "\": " + typed.error().message, 2);
      req.root_inputs[k] = *typed;
    }
  } else {
    stepfile::Invocation inv;
    if (!a.ref.empty() && HasPrefix(a.ref, "step:")) {
      auto list = stepfile::ParseInvocationList("- " + a.ref, "<command line>");
      if (!list.ok()) return Fail(list.error().message, 2);
      if (list->size() != 1) return Fail("expected one step", 2);
      inv = (*list)[0];
    } else if (!a.ref.empty()) {
      auto ref = stepfile::ParseShortReference(a.ref);
      if (!ref.ok()) {
        // Go's words, and the likeliest cause when they come: a local path written without "./".
        std::error_code ec;
        std::string hint;
        if (std::filesystem::is_directory(a.ref, ec)) {
          hint = " (to run the step in the directory " + a.ref + ", give ./" + a.ref + ")";
        } else if (std::filesystem::exists(a.ref, ec)) {
          hint = " (to run the file " + a.ref + ", give ./" + a.ref + " or -f " + a.ref + ")";
        }
        return Fail(ref.error().message + hint, 2);
      }
      inv.step = *ref;
    } else if (!a.git_url.empty()) {
      std::string yaml = "- step: {git: {url: \"" + a.git_url + "\", rev: \"" + a.git_rev + "\"" +
                         (a.git_dir.empty() ? "" : ", dir: \"" + a.git_dir + "\"") + "}}";
      auto list = stepfile::ParseInvocationList(yaml, "<command line>");
      if (!list.ok()) return Fail(list.error().message, 2);
      inv = (*list)[0];
    } else if (oci) {
      // The same reference as `step: {oci: {...}}` in a file, so both reach one loader.
      auto quoted = [](const std::string& s) { return nlohmann::json(s).dump(); };
      std::string yaml = "- step: {oci: {registry: " + quoted(a.oci_registry) +
                         ", repository: " + quoted(a.oci_repository) + ", tag: " +
                         quoted(a.oci_tag) +
                         (a.oci_dir.empty() ? "" : ", dir: " + quoted(a.oci_dir)) +
                         (a.oci_filename.empty() ? "" : ", file: " + quoted(a.oci_filename)) + "}}";
      auto list = stepfile::ParseInvocationList(yaml, "<command line>");
      if (!list.ok()) return Fail(list.error().message, 2);
      inv = (*list)[0];
    } else {
      return Fail("no step specified (give a reference, -f FILE, --git-url or --oci-repository)", 2);
    }
    for (const auto& [k, v] : *inputs) {
      inv.inputs[k] = stepfile::GuessScalar(v);  // for steps that declare no types (builtins)
      inv.text_inputs[k] = v;                    // typed by the declared type once loaded
    }
    for (const auto& [k, v] : *env) inv.env[k] = v;
    req.root.source = "<command line>";
    req.root.definition.kind = stepfile::Definition::Kind::kSequence;
    req.root.definition.run.push_back(std::move(inv));
    req.root_step_dir = "";
  }
  for (const auto& [k, v] : ProcessEnv()) {
    if (HasPrefix(k, "CI_") || HasPrefix(k, "GITLAB_") || HasPrefix(k, "FF_") ||
        HasPrefix(k, "DOCKER_ENV_")) {
      continue;
    }
    req.env[k] = v;
  }
  if (!a.file.empty()) {
    for (const auto& [k, v] : *env) req.env[k] = v;
  }
  req.job_vars = *job;
  for (const auto& [k, v] : *masked) {
    req.job_vars[k] = v;
    req.secrets.push_back(v);
  }
  // CI_* variables are kept out of the steps' environment, but the log level is still read from
  // ours (the Go runner dropped it, so `CI_STEPS_LOG_LEVEL=debug step-runner run` did nothing).
  auto level_env = req.env;
  if (const char* os_level = std::getenv("CI_STEPS_LOG_LEVEL")) {
    level_env.emplace("CI_STEPS_LOG_LEVEL", os_level);
  }
  auto level = NormalizeLogLevel(req.job_vars, level_env);
  if (!level.ok()) return Fail(level.error().message, 2);
  req.env["CI_STEPS_LOG_LEVEL"] = *level;
  if (!a.file.empty()) {
    if (Status required = CheckRequiredInputs(req.root.spec, req.root_inputs); !required.ok()) {
      return Fail(required.error().message, 2);
    }
  }
  req.merge_stderr = StdoutIsStderr();
  return RunLocally(std::move(req));
}

int CiCommand(const RunFlags& flags) {
  const char* steps = std::getenv("STEPS");
  if (steps == nullptr) return Fail("reading STEPS: environment variable STEPS is not set", 2);
  LocalRunRequest req;
  req.flags = flags;
  auto list = stepfile::ParseInvocationList(steps, "STEPS");
  if (!list.ok()) return Fail("compiling STEPS: " + list.error().message, 2);
  req.root.source = "STEPS";
  req.root.definition.kind = stepfile::Definition::Kind::kSequence;
  req.root.definition.run = std::move(*list);
  const char* project = std::getenv("CI_PROJECT_DIR");
  req.work_dir = (project && *project) ? project : Cwd();
  req.default_results_file = "step-results.json";
  static const char* kKnownVars[] = {"HTTPS_PROXY", "HTTP_PROXY", "LANG",  "LC_ALL",    "LC_CTYPE",
                                     "LOGNAME",     "NO_PROXY",   "PATH",  "SHELL",     "TERM",
                                     "TMPDIR",      "TZ",         "USER",  "all_proxy", "http_proxy",
                                     "https_proxy", "no_proxy"};
  auto env = ProcessEnv();
  for (const char* k : kKnownVars) {
    if (env.count(k)) req.env[k] = env[k];
  }
  for (const auto& [k, v] : env) {
    if (HasPrefix(k, "CI_") || HasPrefix(k, "GITLAB_") || HasPrefix(k, "DOCKER_")) req.job_vars[k] = v;
  }
  auto level = NormalizeLogLevel(req.job_vars, env);
  if (!level.ok()) return Fail(level.error().message, 2);
  req.env["CI_STEPS_LOG_LEVEL"] = *level;
  req.merge_stderr = StdoutIsStderr();
  return RunLocally(std::move(req));
}

int BootstrapCommand(const std::string& dest) {
  std::error_code ec;
  std::filesystem::create_directories(dest, ec);
  if (ec) return Fail("mkdir " + dest + ": " + ec.message(), 1);
  if (!std::filesystem::is_directory(dest)) return Fail("mkdir " + dest + ": not a directory", 1);
  auto self = ReadFile("/proc/self/exe");
  if (!self.ok()) return Fail(self.error().message, 1);
  Status written = WriteFileReplacing(dest + "/step-runner", *self, 0755, ".tmp");
  if (!written.ok()) return Fail(written.error().message, 1);
  return 0;
}

bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "true") == 0 || std::strcmp(v, "1") == 0);
}

void AddRunFlags(CLI::App* cmd, RunFlags& f) {
  AddJobFlags(cmd, f);
  cmd->add_option("--step-results-file", f.step_results_file, "write the result tree (JSON) here");
  f.write_step_results = EnvFlag("CI_STEPS_DEBUG");
  cmd->add_flag("--write-steps-results", f.write_step_results, "write step-results.json");
  cmd->add_option("--step-results-format", f.step_results_format, "json or prototext")
      ->capture_default_str();
  cmd->add_option("--docker", f.docker,
                  "guard: the job's containers stop with it (a per-job DOCKER_HOST); "
                  "passthrough: the steps get the real DOCKER_HOST")
      ->check(CLI::IsMember({"guard", "passthrough"}))
      ->capture_default_str();
}

}  // namespace

void RegisterServiceCommands(CLI::App& app, int& exit_code);

void RegisterCommands(CLI::App& app, int& exit_code) {
  app.set_version_flag("--version", std::string("step-runner ") + STEP_RUNNER_VERSION);
  app.add_subcommand("version", "print the version")->callback([] {
    std::printf("step-runner %s\n", STEP_RUNNER_VERSION);
  });

  auto run_args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "run a step (a reference, or -f FILE)");
  run->add_option("ref", run_args->ref, "step reference: ./dir, ./dir/file.yml, /abs/dir, url@rev, dist://...");
  run->add_option("-f,--file", run_args->file, "a full two-document step file");
  run->add_option("--git-url", run_args->git_url, "git repository of the step");
  run->add_option("--git-rev", run_args->git_rev, "git revision");
  run->add_option("--git-dir", run_args->git_dir, "directory of the step in the repository");
  run->add_option("--oci-registry", run_args->oci_registry, "OCI registry of the step");
  run->add_option("--oci-repository", run_args->oci_repository, "OCI repository of the step");
  run->add_option("--oci-tag", run_args->oci_tag, "OCI tag of the step");
  run->add_option("--oci-dir", run_args->oci_dir, "directory of the step in the image");
  run->add_option("--oci-filename", run_args->oci_filename, "step file name in the image");
  run->add_option("--text-proto-step-file", run_args->text_proto_file,
                  "not supported: a text-format proto definition");
  run->add_option("--inputs", run_args->inputs, "inputs k=v[,k=v]");
  run->add_option("--env", run_args->env, "environment k=v[,k=v]");
  run->add_option("--job", run_args->job, "job variables k=v[,k=v] (${{ job.k }})");
  run->add_option("--masked-job", run_args->masked_job,
                  "job variables whose values are masked: k=v[,k=v], or K alone to take the value "
                  "of the environment variable K");
  AddRunFlags(run, run_args->flags);
  run->callback([run_args, &exit_code] { exit_code = RunCommand(*run_args); });

  auto ci_flags = std::make_shared<RunFlags>();
  CLI::App* ci = app.add_subcommand("ci", "run the steps in the STEPS environment variable");
  AddRunFlags(ci, *ci_flags);
  ci->callback([ci_flags, &exit_code] { exit_code = CiCommand(*ci_flags); });

  auto dest = std::make_shared<std::string>();
  CLI::App* boot = app.add_subcommand("bootstrap", "copy this binary to DEST/step-runner");
  boot->add_option("dest", *dest)->required();
  boot->callback([dest, &exit_code] { exit_code = BootstrapCommand(*dest); });

  RegisterServiceCommands(app, exit_code);
}

}  // namespace sr::cli
