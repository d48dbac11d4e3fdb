// Normally distributed test values (mean 0, standard deviation `scale`),
// the same for the same seed.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

inline std::vector<float> random_floats(size_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
