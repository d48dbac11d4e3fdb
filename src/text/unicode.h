// The Unicode operations the tokenizers need, with Python's semantics where
// the reference (Hugging Face's BertTokenizer, open_clip, ftfy) is Python:
// code points are char32_t, text is UTF-8 at the edges, and character
// properties come from utf8proc.
//
// Known differences from the Python reference, and how they are handled:
//   - str.lower(): utf8proc_tolower is the simple (one-to-one) mapping; the
//     only code point whose Python lower-case is longer is U+0130 (capital I
//     with dot above -> "i" + U+0307), which python_lower() maps explicitly.
//     Python's final-sigma rule never applies in BertTokenizer, which lower-
//     cases one character at a time. All other code points were checked to
//     agree (tests/unit/test_text.cpp, against a table Python wrote).
//   - Unicode version: utf8proc 2.8 has Unicode 15.0, Python 3.11 has 14.0.
//     The 4,489 code points first assigned in 15.0 are unassigned (Cn, hence
//     removed as "control") for Python 3.11 but letters/marks here; the same
//     gap exists between any two Python versions, so it is documented, not
//     patched.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace medquant::text {

// UTF-8 -> code points; throws Error "<what>: invalid UTF-8 at byte N" on
// malformed input (overlong forms, surrogates and values past U+10FFFF included).
std::u32string utf8_decode(std::string_view utf8, std::string_view what = "text");
std::string utf8_encode(std::u32string_view text);
void utf8_append(std::string& out, char32_t c);

// Python's str.isspace(): what str.split() and str.strip() cut on.
bool python_isspace(char32_t c);
// Python's str.lower() of one character (may give two code points).
void python_lower(char32_t c, std::u32string& out);

// Two-letter Unicode general category, "Lu", "Mn", "Cn", ...
std::string_view category(char32_t c);
bool is_category(char32_t c, char major);  // first letter: 'L', 'M', 'N', 'P', 'S', 'Z', 'C'

// Canonical normalisation (NFC composes, NFD decomposes).
std::u32string nfc(std::u32string_view text);
std::u32string nfd(std::u32string_view text);

}  // namespace medquant::text
