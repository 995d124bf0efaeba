#include "log/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace sr {

Result<std::unique_ptr<JobLog>> JobLog::Create(const std::string& path) {
  // O_RDWR: the same descriptor serves pread for followers, even after the file is unlinked. No
  // O_APPEND (splice refuses it): every write goes at size(), the one writer being this object.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return ErrnoError("creating job log " + path, errno);
  return std::unique_ptr<JobLog>(new JobLog(path, std::move(fd)));
}

Status JobLog::Append(std::string_view bytes) {
  if (closed_.load(std::memory_order_relaxed) || bytes.empty()) return Ok();
  Status status = Ok();
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd_.get(), bytes.data(), bytes.size(), size());
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError("writing job log " + path_, errno);
      break;
    }
    // Count what really reached the file, so offsets handed to followers stay exact.
    size_.fetch_add(n, std::memory_order_release);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  NotifyAll();
  return status;
}

OutputMove JobLog::MoveFrom(int fd, size_t max) {
  if (closed_.load(std::memory_order_relaxed)) return {OutputMove::Kind::kRefused};
  int64_t end = size();
  OutputMove m = SpliceOut(fd, fd_.get(), &end, max);
  if (m.kind != OutputMove::Kind::kMoved) return m;
  size_.store(end, std::memory_order_release);
  NotifyAll();
  return m;
}

void JobLog::Close(std::string end_note) {
  if (closed_.load(std::memory_order_relaxed)) return;
  end_note_ = std::move(end_note);
  closed_.store(true, std::memory_order_release);
  NotifyAll();
}

Result<std::string> JobLog::ReadAt(int64_t offset, size_t max) const {
  if (offset < 0) return InvalidError("negative offset " + std::to_string(offset));
  const int64_t limit = size();
  if (offset >= limit) return std::string();
  std::string out(static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(max), limit - offset)),
                  '\0');
  SR_ASSIGN_OR_RETURN(size_t got, ReadInto(offset, out.data(), out.size()));
  out.resize(got);
  return out;
}

Result<size_t> JobLog::ReadInto(int64_t offset, char* out, size_t max) const {
  const int64_t limit = size();
  if (offset < 0) return InvalidError("negative offset " + std::to_string(offset));
  if (offset >= limit) return size_t{0};
  size_t want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(max), limit - offset));
  size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd_.get(), out + got, want - got, offset + static_cast<int64_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("reading job log " + path_, errno);
    }
    if (n == 0) break;  // cannot happen below `limit` unless the file was truncated under us
    got += static_cast<size_t>(n);
  }
  return got;
}

JobLog::FollowerId JobLog::Follow(Notify notify) {
  FollowerId id = next_id_++;
  followers_.emplace(id, std::move(notify));
  return id;
}

void JobLog::Unfollow(FollowerId id) { followers_.erase(id); }

void JobLog::NotifyAll() {
  // Iterate over a copy of the ids: a callback may unfollow itself or another follower, and an
  // unfollowed callback must not run (its owner may be gone).
  std::vector<FollowerId> ids;
  ids.reserve(followers_.size());
  for (const auto& entry : followers_) ids.push_back(entry.first);
  for (FollowerId id : ids) {
    auto it = followers_.find(id);
    if (it == followers_.end()) continue;
    Notify n = it->second;  // copy: the entry may be erased during the call
    n();
  }
}

}  // namespace sr
