#include "core/dtype.h"

#include <array>

namespace medquant::core {
namespace {
struct Info {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr std::array<Info, 10> kInfos = {{
    {DType::F32, "f32", 4},
    {DType::F16, "f16", 2},
    {DType::BF16, "bf16", 2},
    {DType::F64, "f64", 8},
    {DType::I8, "i8", 1},
    {DType::U8, "u8", 1},
    {DType::I16, "i16", 2},
    {DType::I32, "i32", 4},
    {DType::I64, "i64", 8},
    {DType::Bool, "bool", 1},
}};
}  // namespace

size_t dtype_size(DType t) { return kInfos[static_cast<size_t>(t)].size; }
std::string_view dtype_name(DType t) { return kInfos[static_cast<size_t>(t)].name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const Info& info : kInfos)
    if (info.name == name) return info.type;
  return std::nullopt;
}

}  // namespace medquant::core
