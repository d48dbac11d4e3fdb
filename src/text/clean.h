// The text cleaning open_clip applies before its Hugging Face tokenizer
// (open_clip.tokenizer.HFTokenizer, clean="whitespace", its default and what
// BiomedCLIP's config gets):
//
//   text = ftfy.fix_text(text)
//   text = html.unescape(html.unescape(text)).strip()
//   text = " ".join(text.split()).strip()
//
// ftfy.fix_text is reproduced step for step (per line; HTML entities only
// while no line so far holds '<'; C1 controls read as windows-1252; Latin
// ligatures split; full/half-width forms and U+3000 mapped to their plain
// forms; curly quotes straightened; line breaks unified; ANSI terminal
// escapes and unwanted control characters removed; NFC; repeated until
// nothing changes), with its tables generated from ftfy and Python
// (clean_tables.inc, tools/gen_text_tables.py). One part is not: ftfy's
// mojibake repair (fix_encoding: text it judges to be UTF-8 mis-decoded as
// latin-1/windows-1252, such as "CafÃ©", is re-decoded to "Café"). That is a
// heuristic over a large table of character classes; here such text is
// tokenized as written. It never triggers on ASCII.
#pragma once

#include <string>
#include <string_view>

namespace medquant::text {

// open_clip's whole cleaning, UTF-8 in and out; throws Error on invalid UTF-8.
std::string open_clip_clean(std::string_view text);

// The pieces, on code points.
std::u32string ftfy_fix_text(std::u32string_view text);  // without fix_encoding (above)
std::u32string html_unescape(std::u32string_view text);   // Python's html.unescape
std::u32string whitespace_clean(std::u32string_view text);  // " ".join(text.split())

}  // namespace medquant::text
