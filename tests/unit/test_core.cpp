#include <gtest/gtest.h>

#include "core/half.h"

using namespace medquant::core;

TEST(Half, RoundTripsOne) { EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(1.0f)), 1.0f); }
