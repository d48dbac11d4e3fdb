// Shared by the libFuzzer targets: readers that open a path get the input
// through one file per process (on /dev/shm when there is one, so it stays
// in memory), rewritten for every run.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

inline const std::string& fuzz_input_file(const uint8_t* data, size_t size, const char* name) {
  static const std::string path = [name] {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/medquant-fuzz-" + std::to_string(getpid()) + "-" + name;
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  return path;
}
