#include "service/log_messages.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace sr::service {
namespace {

constexpr size_t kHeaderRoom = 8;  // tag + varint length (at most 1 + 5 bytes)

// The pool: blocks of 64 KiB, 128 KiB ... 1 MiB of data (plus the header room), a few of each.
// Smaller messages (a follower that keeps up with a quiet step) are allocated as they come.
// Trivially destructible, so a slice released by a gRPC thread late in the process's exit finds
// it intact; blocks left in it at exit are reachable, not leaked.
constexpr size_t kSmallestClass = 64 * 1024;
constexpr size_t kClasses = 5;  // up to 1 MiB, FollowLogs' largest message
constexpr size_t kPooledFrom = kSmallestClass / 2;
constexpr int kPerClass = 8;

struct Pool {
  std::mutex mu;
  char* free[kClasses][kPerClass];
  int count[kClasses];
  size_t bytes;
  int users;  // live PoolUsers: with none, freed blocks go back to malloc
};
Pool g_pool;

// The pool class of a message of `n` bytes, or kClasses when it is not pooled.
size_t ClassOf(size_t n) {
  if (n < kPooledFrom) return kClasses;
  size_t c = 0;
  for (size_t cap = kSmallestClass; cap < n; cap *= 2) ++c;
  return c;
}
size_t Capacity(size_t c) { return kSmallestClass << c; }

char* Allocate(size_t n, size_t c) {
  if (c < kClasses) {
    std::lock_guard<std::mutex> lock(g_pool.mu);
    if (g_pool.count[c] > 0) {
      g_pool.bytes -= Capacity(c);
      return g_pool.free[c][--g_pool.count[c]];
    }
  }
  return static_cast<char*>(std::malloc(kHeaderRoom + (c < kClasses ? Capacity(c) : n)));
}

void Recycle(char* mem, size_t c) {
  if (c < kClasses) {
    std::lock_guard<std::mutex> lock(g_pool.mu);
    if (g_pool.users > 0 && g_pool.count[c] < kPerClass &&
        g_pool.bytes + Capacity(c) <= LogMessages::kPoolBytes) {
      g_pool.free[c][g_pool.count[c]++] = mem;
      g_pool.bytes += Capacity(c);
      return;
    }
  }
  std::free(mem);
}

}  // namespace

LogMessages::PoolUser::PoolUser() {
  std::lock_guard<std::mutex> lock(g_pool.mu);
  ++g_pool.users;
}

LogMessages::PoolUser::~PoolUser() {
  std::lock_guard<std::mutex> lock(g_pool.mu);
  if (--g_pool.users > 0) return;
  for (size_t c = 0; c < kClasses; ++c) {
    while (g_pool.count[c] > 0) std::free(g_pool.free[c][--g_pool.count[c]]);
  }
  g_pool.bytes = 0;
}

struct LogMessages::Block {
  std::shared_ptr<LogMessages> owner;  // keeps the log open while any stream sends this
  int64_t offset = 0;
  size_t size = 0;
  size_t header = 0;  // bytes of the header, written just before the data
  size_t pool_class = kClasses;
  char* mem = nullptr;  // [header room | data]
  int refs = 1;         // guarded by owner->mu_
};

LogMessages::Hold& LogMessages::Hold::operator=(Hold&& o) noexcept {
  if (this != &o) {
    if (block_) Unref(block_);
    block_ = o.block_;
    o.block_ = nullptr;
  }
  return *this;
}

LogMessages::Hold::~Hold() {
  if (block_) Unref(block_);
}

size_t LogMessages::Hold::size() const { return block_ ? block_->size : 0; }

grpc::ByteBuffer LogMessages::Hold::Buffer() && {
  Block* b = block_;
  block_ = nullptr;
  char* start = b->mem + kHeaderRoom - b->header;
  grpc::Slice slice(start, b->header + b->size, &LogMessages::Unref, b);
  return grpc::ByteBuffer(&slice, 1);
}

LogMessages::Hold LogMessages::Find(int64_t offset, size_t max) {
  std::lock_guard<std::mutex> lock(mu_);
  Block* best = nullptr;
  for (Block* b : live_) {
    if (b->offset == offset && b->size <= max && (!best || b->size > best->size)) best = b;
  }
  if (!best) return Hold();
  ++best->refs;
  return Hold(best);
}

Result<LogMessages::Hold> LogMessages::Read(int64_t offset, size_t n) {
  const size_t c = ClassOf(n);
  char* mem = Allocate(n, c);
  if (mem == nullptr) return Error{Error::Kind::kInternal, "out of memory for a log message"};
  auto got = log_->ReadInto(offset, mem + kHeaderRoom, n);
  if (!got.ok() || *got != n) {
    Recycle(mem, c);
    if (!got.ok()) return got.error();
    return Error{Error::Kind::kInternal, "job log " + log_->path() + " is shorter than its size"};
  }
  unsigned char header[kHeaderRoom];
  size_t h = 0;
  header[h++] = 0x0a;  // field 1 (data), wire type 2 (length-delimited)
  for (uint64_t v = n;; v >>= 7) {
    header[h++] = static_cast<unsigned char>((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    if (v <= 0x7f) break;
  }
  std::memcpy(mem + kHeaderRoom - h, header, h);
  auto block = std::make_unique<Block>();
  block->owner = shared_from_this();
  block->offset = offset;
  block->size = n;
  block->header = h;
  block->pool_class = c;
  block->mem = mem;
  Block* b = block.release();  // from here on its refs own it (Release)
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.push_back(b);
  }
  return Hold(b);
}

void LogMessages::Unref(void* block) {
  auto* b = static_cast<Block*>(block);
  std::shared_ptr<LogMessages> owner = b->owner;  // outlives the block's own reference
  owner->Release(b);
}

void LogMessages::Release(Block* b) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (--b->refs > 0) return;
    live_.erase(std::find(live_.begin(), live_.end(), b));
  }
  std::unique_ptr<Block> dead(b);
  Recycle(b->mem, b->pool_class);
}

}  // namespace sr::service
