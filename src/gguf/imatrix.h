// Importance matrices (llama-imatrix output) for quantization, in both file
// formats llama-quantize reads (common/imatrix-loader.cpp of the pinned
// llama.cpp), normalised the same way (tools/quantize/quantize.cpp).
//
// GGUF format (current): a GGUF file whose tensors come in pairs per weight
// W: "W.in_sum2" (f32, ne[0] = row length of W, ne[1] = number of experts)
// holding sums of squared activations, and "W.counts" (f32, one count per
// expert). Keys "imatrix.datasets" (array of str), "imatrix.chunk_count" (u32)
// and "imatrix.chunk_size" (u32) must all be present. The importance of
// column i of expert j is in_sum2[j][i] / counts[j] (1 where the count is 0).
//
// Legacy ".dat" format, little-endian:
//   i32 n_entries (>= 1), then per entry:
//     i32 name length, name bytes, i32 ncall, i32 nval (>= 1), nval x f32
//   optionally: i32 chunk count, i32 dataset name length, dataset name bytes.
// The importance is value / ncall (the value itself where ncall <= 0).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace medquant::gguf {

struct Imatrix {
  // Per weight name: ne[0] * n_expert importance values, normalised.
  std::unordered_map<std::string, std::vector<float>> entries;
  std::vector<std::string> datasets;
  int32_t chunk_count = 0;
  bool legacy = false;
};

// Reads either format (GGUF when the file starts with "GGUF"); throws Error
// naming the file and the entry or offset on malformed input.
Imatrix load_imatrix(const std::string& path);

// Sums as llama-imatrix collects them (its Stats), before normalisation.
struct ImatrixSums {
  struct Entry {
    std::vector<float> sums;      // ne[0] * counts.size(): sums of squared activations
    std::vector<int64_t> counts;  // per expert (one for a dense weight)
  };
  std::map<std::string, Entry> entries;  // sorted by name, the order llama-imatrix writes
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0;
  uint32_t chunk_size = 0;
};

// Writes the GGUF format above as llama-imatrix's save_imatrix does (keys
// general.type = "imatrix", imatrix.datasets, imatrix.chunk_count,
// imatrix.chunk_size; per entry "W.in_sum2" [ne0, n_expert] and "W.counts"
// [1, n_expert]), atomically.
void write_imatrix(const std::string& path, const ImatrixSums& sums);

}  // namespace medquant::gguf
