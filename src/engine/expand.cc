// Expansions charged to the job (contract section 7 item 4): every value an expression makes —
// inputs, env of invocations and definitions, command arguments, work dirs, outputs — counts
// against one total per job (expr::kMaxExpandedBytes), and no expansion is made past what is left
// of it. A large one is made on the loop's helper thread (EventLoop::Offload): rendering 16 MiB
// takes tens of milliseconds, during which the loop would serve nobody else.
#include "engine/internal.h"
#include "expr/expr.h"

namespace sr::engine {
namespace {

// Expansions estimated above this are made off the loop; below, the thread hop would cost more
// than the work (most expansions are a few bytes).
constexpr size_t kInlineBytes = size_t{64} << 10;

size_t Remaining(const Engine::State& st) {
  return expr::kMaxExpandedBytes - std::min(st.expanded_bytes, expr::kMaxExpandedBytes);
}

Error JobCapError() {
  return FailedError("expanded values of the job exceed the limit of " +
                     std::to_string(expr::kMaxExpandedBytes) + " bytes");
}

// `work` on the loop thread when small, else on the helper thread (the coroutine waits; nothing
// on the loop touches the view meanwhile: it belongs to this step's scope, which is suspended).
template <class T>
Task<Result<T>> Make(Engine::State& st, size_t estimate, std::function<Result<T>()> work) {
  if (estimate <= kInlineBytes) co_return work();
  // Only references are captured in the co_await expression: GCC 12 destroys temporaries with
  // non-trivial destructors there twice.
  std::optional<Result<T>> result;
  co_await AwaitCallback<bool>([&](std::function<void(bool)> resume) {
    st.loop.Offload([&result, &work] { result.emplace(work()); }, [resume] { resume(true); });
  });
  co_return std::move(*result);
}

// The expansion stopped at what was left of the job's total: say so, not "larger than N bytes".
Error Mapped(Error e, size_t limit) {
  if (limit < expr::kMaxExpandedBytes &&
      e.message == "expanded value larger than " + std::to_string(limit) + " bytes") {
    return JobCapError();
  }
  return AsFailure(std::move(e));
}

}  // namespace

Status ChargeExpansion(Engine::State& st, size_t bytes) {
  st.expanded_bytes += bytes;
  if (st.expanded_bytes > expr::kMaxExpandedBytes) return JobCapError();
  return Ok();
}

size_t ValueBytes(const json& value) { return expr::ValueSize(value); }

void ChargeWork(Engine::State& st, size_t bytes) { st.work_since_yield += bytes; }

void ChargeWork(Engine::State& st, const json& value) {
  st.work_since_yield += expr::ValueSize(value, kWorkSlice);
}

Task<bool> YieldIfBusy(Engine::State& st) {
  if (st.work_since_yield < kWorkSlice) co_return false;
  st.work_since_yield = 0;
  co_await AwaitCallback<bool>([&](std::function<void(bool)> resume) {
    st.loop.Post([resume] { resume(true); });
  });
  co_return true;
}

Task<Result<std::string>> ExpandStringCharged(Engine::State& st, const std::string& raw,
                                              const json& view) {
  const size_t limit = Remaining(st);
  const size_t estimate = expr::EstimateExpansion(std::string_view(raw), view, kInlineBytes);
  std::function<Result<std::string>()> work = [&raw, &view, limit] {
    return expr::ExpandString(raw, view, limit);
  };
  auto out = co_await Make<std::string>(st, estimate, std::move(work));
  if (!out.ok()) co_return Mapped(out.error(), limit);
  if (Status c = ChargeExpansion(st, out->size()); !c.ok()) co_return c.error();
  if (estimate <= kInlineBytes) ChargeWork(st, out->size());
  co_return out;
}

Task<Result<json>> ExpandCharged(Engine::State& st, const json& raw, const json& view) {
  const size_t limit = Remaining(st);
  const size_t estimate = expr::EstimateValueExpansion(raw, view, kInlineBytes);
  std::function<Result<json>()> work = [&raw, &view, limit] { return expr::Expand(raw, view, limit); };
  auto out = co_await Make<json>(st, estimate, std::move(work));
  if (!out.ok()) co_return Mapped(out.error(), limit);
  const size_t bytes = ValueBytes(*out);
  if (Status c = ChargeExpansion(st, bytes); !c.ok()) co_return c.error();
  if (estimate <= kInlineBytes) ChargeWork(st, bytes);
  co_return out;
}

Task<Result<Env>> ExpandDefinitionEnv(Engine::State& st, const stepfile::Definition& def,
                                      const json& view) {
  Env out;
  for (const auto& [k, raw] : def.env) {
    auto v = co_await ExpandStringCharged(st, raw, view);
    if (!v.ok()) co_return v.error().Wrap("expand step env: env variable \"" + k + "\"");
    out[k] = std::move(*v);
  }
  co_return out;
}

}  // namespace sr::engine
