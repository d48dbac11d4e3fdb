// Process-wide output settings (--quiet, --verbose) and the printing helpers
// that honour them. Results go to stdout; logs and progress to stderr.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace medquant::core {

enum class Verbosity { Quiet = 0, Normal = 1, Verbose = 2 };

void set_verbosity(Verbosity v);
Verbosity verbosity();
bool stderr_is_terminal();

template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  if (verbosity() >= Verbosity::Normal)
    fmt::print(stderr, "{}\n", fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void log_verbose(fmt::format_string<Args...> format, Args&&... args) {
  if (verbosity() >= Verbosity::Verbose)
    fmt::print(stderr, "{}\n", fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void log_warning(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print(stderr, "warning: {}\n", fmt::format(format, std::forward<Args>(args)...));
}

// "1.23 GiB", "512 B": for tables and logs.
std::string human_bytes(uint64_t bytes);

}  // namespace medquant::core
