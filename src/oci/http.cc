#include "oci/http.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "oci/c_libs.h"

namespace sr::oci {

// One request in flight. Owned by the Send coroutine; the multi handle only points at it.
struct Transfer {
  explicit Transfer(const CurlLib& l) : curl(l) {}
  const CurlLib& curl;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpRequest request;
  HttpResponse response;
  std::optional<Error> sink_error;     // on_data refused the body
  bool body_too_big = false;
  bool finished = false;               // resume is posted; later events are ignored
  std::function<void(CURLcode)> done;  // posts the coroutine's resumption
  char error_buffer[CURL_ERROR_SIZE] = {0};
  ~Transfer() {
    if (easy) curl.easy_cleanup(easy);
    if (headers) curl.slist_free_all(headers);
  }
};

struct Http::Impl {
  EventLoop& loop;
  HttpOptions options;
  Result<const CurlLib*> lib;  // an error when libcurl cannot be loaded: every Send returns it
  CURLM* multi = nullptr;
  std::map<curl_socket_t, EventLoop::WatchId> watches;
  std::optional<EventLoop::TimerId> timer;
  std::map<CURL*, Transfer*> transfers;

  Impl(EventLoop& l, HttpOptions o) : loop(l), options(std::move(o)), lib(LoadCurl()) {
    if (!lib.ok()) return;
    const CurlLib& curl = **lib;
    static const CURLcode global = curl.global_init(CURL_GLOBAL_DEFAULT);
    (void)global;
    multi = curl.multi_init();
    curl.multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::OnSocket);
    curl.multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl.multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::OnTimer);
    curl.multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }
  ~Impl() {
    if (!lib.ok()) return;
    for (auto& [easy, t] : transfers) curl().multi_remove_handle(multi, easy);
    // Cleanup closes cached connections and may still call OnSocket/OnTimer: unhook after it.
    curl().multi_cleanup(multi);
    for (auto& [fd, id] : watches) loop.Unwatch(id);
    if (timer) loop.CancelTimer(*timer);
  }
  const CurlLib& curl() const { return **lib; }

  static int OnSocket(CURL*, curl_socket_t fd, int what, void* self_ptr, void*) {
    auto* self = static_cast<Impl*>(self_ptr);
    if (auto it = self->watches.find(fd); it != self->watches.end()) {
      self->loop.Unwatch(it->second);
      self->watches.erase(it);
    }
    if (what == CURL_POLL_REMOVE) return 0;
    uint32_t events = 0;
    if (what & CURL_POLL_IN) events |= EPOLLIN;
    if (what & CURL_POLL_OUT) events |= EPOLLOUT;
    auto id = self->loop.Watch(fd, events, [self, fd](uint32_t ev) {
      int mask = 0;
      if (ev & EPOLLIN) mask |= CURL_CSELECT_IN;
      if (ev & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (ev & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
      self->Act(fd, mask);
    });
    if (id.ok()) self->watches[fd] = *id;
    return id.ok() ? 0 : -1;
  }

  static int OnTimer(CURLM*, long timeout_ms, void* self_ptr) {
    auto* self = static_cast<Impl*>(self_ptr);
    if (self->timer) self->loop.CancelTimer(*self->timer);
    self->timer.reset();
    if (timeout_ms < 0) return 0;
    // Never call curl back from inside its own callback: the loop runs it on its next turn.
    self->timer = self->loop.After(std::chrono::milliseconds(timeout_ms), [self] {
      self->timer.reset();
      self->Act(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }

  void Act(curl_socket_t fd, int mask) {
    int running = 0;
    curl().multi_socket_action(multi, fd, mask, &running);
    int left = 0;
    while (CURLMsg* msg = curl().multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      auto it = transfers.find(msg->easy_handle);
      if (it == transfers.end()) continue;
      Transfer* t = it->second;
      CURLcode code = msg->data.result;
      transfers.erase(it);
      curl().multi_remove_handle(multi, t->easy);
      t->done(code);
    }
  }

  void Remove(Transfer* t) {
    if (transfers.erase(t->easy) > 0) curl().multi_remove_handle(multi, t->easy);
  }
};

namespace {

size_t OnHeader(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();  // a new response (after a redirect or a 100 Continue)
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  t->response.headers[name] = value;
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  long status = 0;
  t->curl.easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  std::string_view chunk(data, size * n);
  if (t->request.on_data && status >= 200 && status < 300) {
    Status ok = t->request.on_data(chunk);
    if (!ok.ok()) {
      t->sink_error = ok.error();
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    return chunk.size();
  }
  if (t->response.body.size() + chunk.size() > t->request.max_body) {
    t->body_too_big = true;
    return 0;
  }
  t->response.body.append(chunk);
  return chunk.size();
}

}  // namespace

Http::Http(EventLoop& loop, HttpOptions options)
    : impl_(std::make_unique<Impl>(loop, std::move(options))) {}
Http::~Http() = default;

Task<Result<HttpResponse>> Http::Send(HttpRequest request, CancelToken* cancel) {
  if (cancel && cancel->requested()) co_return Error{Error::Kind::kCancelled, "cancelled"};
  if (!impl_->lib.ok()) co_return impl_->lib.error();
  const CurlLib& curl = impl_->curl();
  auto t = std::make_unique<Transfer>(curl);
  t->request = std::move(request);
  t->easy = curl.easy_init();
  if (!t->easy) co_return InternalError("curl_easy_init failed");
  CURL* e = t->easy;
  const HttpRequest& r = t->request;
  curl.easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl.easy_setopt(e, CURLOPT_FOLLOWLOCATION, r.follow_redirects ? 1L : 0L);
  curl.easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  curl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl.easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer);
  curl.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         impl_->options.connect_timeout).count()));
  // A stalled transfer (under 1 byte/s for the stall timeout) fails; a slow one may go on.
  curl.easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl.easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                   static_cast<long>(std::max<int64_t>(
                       1, std::chrono::duration_cast<std::chrono::seconds>(
                              impl_->options.stall_timeout).count())));
  if (!impl_->options.ca_file.empty()) curl.easy_setopt(e, CURLOPT_CAINFO, impl_->options.ca_file.c_str());
  if (!impl_->options.ca_dir.empty()) curl.easy_setopt(e, CURLOPT_CAPATH, impl_->options.ca_dir.c_str());
  curl.easy_setopt(e, CURLOPT_USERAGENT, "step-runner/" STEP_RUNNER_VERSION);
  curl.easy_setopt(e, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl.easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  curl.easy_setopt(e, CURLOPT_WRITEFUNCTION, &OnBody);
  curl.easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  for (const auto& h : r.headers) t->headers = curl.slist_append(t->headers, h.c_str());
  if (r.method == "HEAD") {
    curl.easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (r.method == "PUT" || r.method == "POST") {
    if (r.method == "PUT") curl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    const std::string_view body = r.body_view.data() != nullptr ? r.body_view : std::string_view(r.body);
    curl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl.easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    t->headers = curl.slist_append(t->headers, "Expect:");  // no 100-continue round trip
  } else if (r.method != "GET") {
    curl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  curl.easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);

  Impl* impl = impl_.get();
  Transfer* tp = t.get();
  std::shared_ptr<void> on_cancel;
  std::optional<CURLcode> code = co_await AwaitCallback<std::optional<CURLcode>>(
      [&](std::function<void(std::optional<CURLcode>)> resume) {
        // Resumption always goes through the loop: the coroutine may free this Http, and curl's
        // multi handle must not be inside a callback of its own when that happens.
        tp->done = [impl, tp, resume](CURLcode c) {
          if (tp->finished) return;
          tp->finished = true;
          impl->loop.After(Duration(0), [resume, c] { resume(c); });
        };
        impl->transfers[tp->easy] = tp;
        if (curl.multi_add_handle(impl->multi, tp->easy) != CURLM_OK) {
          impl->transfers.erase(tp->easy);
          tp->finished = true;
          resume(CURLE_FAILED_INIT);
          return;
        }
        if (cancel) {
          on_cancel = cancel->OnCancel([impl, tp, resume] {
            if (tp->finished) return;
            tp->finished = true;
            impl->Remove(tp);
            impl->loop.After(Duration(0), [resume] { resume(std::nullopt); });
          });
        }
      });
  on_cancel.reset();
  impl->Remove(tp);
  if (!code) co_return Error{Error::Kind::kCancelled, "cancelled"};
  if (t->sink_error) co_return *t->sink_error;
  if (t->body_too_big) {
    co_return FailedError(t->request.method + " " + t->request.url + ": response larger than " +
                          std::to_string(t->request.max_body) + " bytes");
  }
  if (*code != CURLE_OK) {
    std::string why = t->error_buffer[0] ? t->error_buffer : curl.easy_strerror(*code);
    if (*code == CURLE_COULDNT_CONNECT || *code == CURLE_COULDNT_RESOLVE_HOST ||
        (*code == CURLE_OPERATION_TIMEDOUT && t->response.headers.empty())) {
      why = "unreachable (" + why + ")";
    }
    co_return FailedError(t->request.method + " " + t->request.url + ": " + why);
  }
  curl.easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t->response.status);
  co_return std::move(t->response);
}

}  // namespace sr::oci
