#include "models/biomedclip/weights.h"

#include <cstring>
#include <optional>

#include "checkpoint/safetensors.h"
#include "checkpoint/torch_zip.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"

namespace medquant::models::biomedclip {

struct Weights::Impl {
  std::optional<checkpoint::TorchZipFile> zip;
  std::optional<checkpoint::Checkpoint> st;
};

Weights::~Weights() = default;

std::shared_ptr<const Weights> Weights::open(const std::string& path) {
  std::shared_ptr<Weights> w(new Weights());
  w->path_ = path;
  w->impl_ = std::make_unique<Impl>();
  bool zip = false;
  {
    core::MappedFile probe(path);
    zip = checkpoint::looks_like_torch_zip({probe.data(), std::min<size_t>(probe.size(), 8)});
  }
  if (zip) {
    w->impl_->zip.emplace(path);
    for (const auto& t : w->impl_->zip->tensors()) w->shapes_[t.name] = t.shape;
  } else {
    w->impl_->st.emplace(checkpoint::Checkpoint::open(path));
    for (const auto& t : w->impl_->st->tensors()) w->shapes_[t.name()] = t.info->shape;
  }
  return w;
}

core::DType Weights::dtype(std::string_view name) const {
  if (impl_->zip) return impl_->zip->at(name).dtype;
  return impl_->st->at(name).info->dtype;
}

std::span<const uint8_t> Weights::f32_bytes(std::string_view name) const {
  if (impl_->zip) {
    const auto& t = impl_->zip->at(name);
    if (t.dtype != core::DType::F32 || !t.contiguous()) return {};
    return impl_->zip->data(t);
  }
  const auto& t = impl_->st->at(name);
  if (t.info->dtype != core::DType::F32) return {};
  return t.bytes();
}

Weights::Floats Weights::floats(std::string_view name) const {
  Floats out;
  core::DType type;
  std::span<const uint8_t> bytes;
  std::vector<uint8_t> gathered;
  if (impl_->zip) {
    const auto& t = impl_->zip->at(name);
    type = t.dtype;
    if (t.contiguous()) {
      bytes = impl_->zip->data(t);
    } else {
      gathered = impl_->zip->materialize(t);
      bytes = gathered;
    }
  } else {
    const auto& t = impl_->st->at(name);
    type = t.info->dtype;
    bytes = t.bytes();
  }
  const size_t n = bytes.size() / core::dtype_size(type);
  switch (type) {
    case core::DType::F32:
      if (gathered.empty() && reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) == 0) {
        out.view = {reinterpret_cast<const float*>(bytes.data()), n};
      } else {
        out.owned.resize(n);
        std::memcpy(out.owned.data(), bytes.data(), n * 4);
      }
      break;
    case core::DType::F16:
    case core::DType::BF16: {
      std::vector<uint16_t> h(n);
      std::memcpy(h.data(), bytes.data(), n * 2);
      out.owned.resize(n);
      if (type == core::DType::F16)
        core::fp16_to_fp32_row(h.data(), out.owned.data(), n);
      else
        core::bf16_to_fp32_row(h.data(), out.owned.data(), n);
      break;
    }
    case core::DType::F64:
      out.owned.resize(n);
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, bytes.data() + i * 8, 8);
        out.owned[i] = static_cast<float>(d);
      }
      break;
    default:
      fail("{}: tensor '{}' is {}, expected a floating-point tensor", path_, name,
           core::dtype_name(type));
  }
  return out;
}

void Weights::release(std::string_view name) const {
  if (impl_->zip) {
    impl_->zip->release(impl_->zip->at(name));
    return;
  }
  const auto& t = impl_->st->at(name);
  t.file->release(*t.info);
}

}  // namespace medquant::models::biomedclip
