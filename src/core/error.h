// The one error type of medquant. Every message names what was being read or
// written (file, offset, tensor, node) so the CLI can print it as is.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace medquant {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error with a formatted message: fail("{}: bad magic {:#x}", path, m).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Runs fn(); an Error thrown inside gets "context: " put in front of its message.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace medquant
