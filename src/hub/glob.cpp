#include "hub/glob.h"

#include <fnmatch.h>

namespace medquant::hub {

bool glob_match(std::string_view pattern, std::string_view path) {
  std::string p(pattern);
  if (!p.empty() && p.back() == '/') p += '*';  // "folder/" selects the folder's contents
  // No FNM_PATHNAME: like Python's fnmatch, '*' crosses '/'.
  return ::fnmatch(p.c_str(), std::string(path).c_str(), 0) == 0;
}

bool path_selected(std::string_view path, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude) {
  bool included = include.empty();
  for (const auto& p : include)
    if (glob_match(p, path)) included = true;
  if (!included) return false;
  for (const auto& p : exclude)
    if (glob_match(p, path)) return false;
  return true;
}

}  // namespace medquant::hub
