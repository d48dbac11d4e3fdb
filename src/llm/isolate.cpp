#include "llm/isolate.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>

#include "core/error.h"

namespace medquant::llm {
namespace {

void write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// Child -> parent message: one status byte ('O' output, 'E' error), then the text.
[[noreturn]] void child_main(int fd, const std::function<std::string()>& fn) {
  char status = 'E';
  std::string text;
  try {
    text = fn();
    status = 'O';
  } catch (const std::exception& e) {
    text = e.what();
  } catch (...) {
    text = "unknown exception";
  }
  write_all(fd, &status, 1);
  write_all(fd, text.data(), text.size());
  ::close(fd);
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(status == 'O' ? 0 : 1);
}

}  // namespace

IsolatedResult run_isolated(const std::string& what, const std::function<std::string()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) fail("{}: pipe failed: {}", what, std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("{}: fork failed: {}", what, std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(fds[1], fn);
  }
  ::close(fds[1]);
  std::string message;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break;
    message.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  struct rusage usage {};
  pid_t w;
  do {
    w = ::wait4(pid, &status, 0, &usage);
  } while (w < 0 && errno == EINTR);
  IsolatedResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_rss_bytes = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
  if (w < 0) fail("{}: waiting for the worker process failed: {}", what, std::strerror(errno));
  if (WIFSIGNALED(status))
    fail("{}: llama.cpp stopped the worker process (signal {}: {}); see its messages above",
         what, WTERMSIG(status), strsignal(WTERMSIG(status)));
  if (message.empty())
    fail("{}: the worker process exited ({}) without an answer", what,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  if (message[0] == 'E') throw Error(message.substr(1));
  if (message[0] != 'O' || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("{}: the worker process gave a malformed answer", what);
  r.output = message.substr(1);
  return r;
}

}  // namespace medquant::llm
