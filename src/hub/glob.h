// File selection for `fetch --include/--exclude`, with the semantics of
// huggingface_hub's allow_patterns/ignore_patterns (Python fnmatch): `*` and
// `?` also match '/', `[...]` is a character set, and a pattern ending in '/'
// means everything under that folder.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace medquant::hub {

bool glob_match(std::string_view pattern, std::string_view path);

// True when `path` matches one of `include` (or include is empty) and none of `exclude`.
bool path_selected(std::string_view path, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude);

}  // namespace medquant::hub
