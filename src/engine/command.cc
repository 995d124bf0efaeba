#include "engine/command.h"

#include <memory>

namespace sr::engine {

Task<Result<CommandResult>> RunCommand(Supervisor& sup, ProcessSpec spec, CancelSource* cancel) {
  auto output = std::make_shared<std::string>();
  std::shared_ptr<ProcessTree> tree;
  std::optional<Error> spawn_failure;
  CancelSource::Registration registered;
  TreeExit exit = co_await AwaitCallback<TreeExit>([&](std::function<void(TreeExit)> resume) {
    auto spawned = sup.Spawn(
        spec, [output](OutputStream, std::string_view b) { output->append(b); },
        [resume](TreeExit e) { resume(std::move(e)); });
    if (!spawned.ok()) {
      spawn_failure = spawned.error();
      resume(TreeExit{});
      return;
    }
    tree = *spawned;
    // The runner's own helpers get no grace: a cancel kills them at once.
    if (cancel) registered = cancel->Register(tree, StepStop{SIGKILL, {}, true});
  });
  (void)tree;
  if (spawn_failure) co_return *spawn_failure;
  co_return CommandResult{std::move(exit), std::move(*output)};
}

}  // namespace sr::engine
