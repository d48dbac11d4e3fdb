#include "core/dtype.h"

#include <array>

namespace medquant::core {
namespace {
struct Info {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr std::array<Info, 15> kInfos = {{
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
    {DType::U16, "u16", 2},
    {DType::U32, "u32", 4},
    {DType::U64, "u64", 8},
    {DType::F8E4M3, "f8_e4m3", 1},
    {DType::F8E5M2, "f8_e5m2", 1},
}};
// dtype_size/dtype_name index kInfos by the enum value.
static_assert([] {
  for (size_t i = 0; i < kInfos.size(); ++i)
    if (static_cast<size_t>(kInfos[i].type) != i) return false;
  return true;
}());
}  // namespace

size_t dtype_size(DType t) { return kInfos[static_cast<size_t>(t)].size; }
std::string_view dtype_name(DType t) { return kInfos[static_cast<size_t>(t)].name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const Info& info : kInfos)
    if (info.name == name) return info.type;
  return std::nullopt;
}

}  // namespace medquant::core
