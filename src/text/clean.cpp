#include "text/clean.h"

#include <algorithm>
#include <cstring>

#include "text/unicode.h"

namespace medquant::text {
namespace {

struct Entity {
  const char* name;
  const char* value;  // UTF-8
};
struct CodeMap {
  char32_t from, to;
};
struct CodeText {
  char32_t from;
  const char* text;  // UTF-8
};

#include "text/clean_tables.inc"

template <size_t N>
const char* find_entity(const Entity (&table)[N], const std::string& name) {
  auto it = std::lower_bound(std::begin(table), std::end(table), name,
                             [](const Entity& e, const std::string& n) { return std::strcmp(e.name, n.c_str()) < 0; });
  return it != std::end(table) && name == it->name ? it->value : nullptr;
}

template <size_t N>
const char* find_code(const CodeText (&table)[N], char32_t c) {
  auto it = std::lower_bound(std::begin(table), std::end(table), c,
                             [](const CodeText& e, char32_t x) { return e.from < x; });
  return it != std::end(table) && it->from == c ? it->text : nullptr;
}

void append_utf8(std::u32string& out, const char* utf8) {
  out += utf8_decode(utf8, "table");
}

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_ascii_alnum(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string ascii_or_empty(std::u32string_view s) {
  // Entity names are ASCII; anything else can't match a table entry.
  std::string out;
  for (char32_t c : s) {
    if (c >= 0x80) return {};
    out += static_cast<char>(c);
  }
  return out;
}

// html._replace_charref for a numeric reference.
void numeric_charref(uint32_t num, std::u32string& out) {
  for (const CodeMap& m : kInvalidCharrefs)
    if (m.from == num) {
      out += m.to;
      return;
    }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out += char32_t{0xFFFD};
    return;
  }
  if (std::binary_search(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), num)) return;
  out += static_cast<char32_t>(num);
}

// ---- ftfy's fixers -------------------------------------------------------------

// ftfy.fixes.unescape_html: &name; / &#...; up to 24 ASCII letters and digits,
// decoded only when the table knows the name (or html.unescape consumes the
// whole numeric reference).
std::u32string ftfy_unescape_html(std::u32string_view s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    const size_t start = i + 1;
    const bool numeric = start < s.size() && s[start] == '#';
    size_t k = numeric ? start + 1 : start;
    size_t run = 0;
    while (k + run < s.size() && run <= 24 && is_ascii_alnum(s[k + run])) ++run;
    if (run < 1 || run > 24 || k + run >= s.size() || s[k + run] != ';') {
      out += s[i++];
      continue;
    }
    const size_t end = k + run + 1;  // past ';'
    const std::u32string_view match = s.substr(i, end - i);
    const std::string name = ascii_or_empty(match.substr(1));
    if (const char* v = numeric ? nullptr : find_entity(kHtml5Entities, name)) {
      append_utf8(out, v);
    } else if (const char* u = numeric ? nullptr : find_entity(kFtfyEntities, name)) {
      append_utf8(out, u);
    } else if (numeric) {
      const std::u32string decoded = html_unescape(match);
      if (decoded.find(U';') != std::u32string::npos) out += match;
      else out += decoded;
    } else {
      out += match;
    }
    i = end;
  }
  return out;
}

template <size_t N>
std::u32string translate(std::u32string_view s, const CodeText (&table)[N]) {
  std::u32string out;
  for (char32_t c : s) {
    if (const char* t = find_code(table, c)) append_utf8(out, t);
    else out += c;
  }
  return out;
}

std::u32string fix_segment(std::u32string text, bool unescape) {
  while (true) {
    const std::u32string original = text;
    if (unescape) text = ftfy_unescape_html(text);
    // (fix_encoding, ftfy's mojibake repair, would run here: see clean.h.)
    for (char32_t& c : text)  // fix_c1_controls
      if (c >= 0x80 && c <= 0x9f) c = kSloppyCp1252[c - 0x80];
    text = translate(text, kLigatures);  // fix_latin_ligatures
    text = translate(text, kWidthMap);   // fix_character_width
    for (char32_t& c : text) {           // uncurl_quotes
      if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b)) c = '\'';
      else if (c >= 0x201c && c <= 0x201f) c = '"';
    }
    std::u32string t;  // fix_line_breaks
    for (size_t i = 0; i < text.size(); ++i) {
      const char32_t c = text[i];
      if (c == '\r') {
        t += '\n';
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
        t += '\n';
      } else {
        t += c;
      }
    }
    text.clear();  // remove_terminal_escapes: ESC [ (digits|;)* letter
    for (size_t i = 0; i < t.size();) {
      if (t[i] == 0x1b && i + 1 < t.size() && t[i + 1] == '[') {
        size_t k = i + 2;
        while (k < t.size() && (t[k] == ';' || category(t[k]) == "Nd")) ++k;
        if (k < t.size() && ((t[k] >= U'a' && t[k] <= U'z') || (t[k] >= U'A' && t[k] <= U'Z'))) {
          i = k + 1;
          continue;
        }
      }
      text += t[i++];
    }
    std::erase_if(text, [](char32_t c) {  // remove_control_chars
      return std::binary_search(std::begin(kFtfyControlChars), std::end(kFtfyControlChars), c);
    });
    text = nfc(text);
    if (text == original) return text;
  }
}

}  // namespace

std::u32string html_unescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    size_t k = i + 1;
    if (k < s.size() && s[k] == '#') {
      // &#123;  &#x1F;  (the ';' is optional)
      uint32_t num = 0;
      size_t d = k + 1;
      const bool hex = d < s.size() && (s[d] == 'x' || s[d] == 'X') && d + 1 < s.size() &&
                       is_ascii_hex(s[d + 1]);
      if (hex) {
        ++d;
        while (d < s.size() && is_ascii_hex(s[d])) {
          const uint32_t v = is_ascii_digit(s[d]) ? s[d] - '0' : (s[d] | 0x20) - 'a' + 10;
          num = std::min<uint32_t>(num * 16 + v, 0x110000);  // saturates: past U+10FFFF is all one
          ++d;
        }
      } else if (d < s.size() && is_ascii_digit(s[d])) {
        while (d < s.size() && is_ascii_digit(s[d])) {
          num = std::min<uint32_t>(num * 10 + (s[d] - '0'), 0x110000);
          ++d;
        }
      } else {
        out += s[i++];
        continue;
      }
      if (d < s.size() && s[d] == ';') ++d;
      numeric_charref(num, out);
      i = d;
      continue;
    }
    // Named: up to 32 characters other than \t \n \f space < & # ;, then an optional ';'.
    auto stop = [](char32_t c) {
      return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
             c == ';';
    };
    size_t e = k;
    while (e < s.size() && e - k < 32 && !stop(s[e])) ++e;
    if (e == k) {
      out += s[i++];
      continue;
    }
    if (e < s.size() && s[e] == ';') ++e;
    const std::u32string_view ref = s.substr(k, e - k);
    const std::string name = ascii_or_empty(ref);
    if (const char* v = name.empty() ? nullptr : find_entity(kHtml5Entities, name)) {
      append_utf8(out, v);
    } else {
      // The longest prefix (at least 2 characters) that is a known name.
      bool found = false;
      for (size_t x = ref.size() - 1; x >= 2 && x < ref.size(); --x) {
        const std::string prefix = ascii_or_empty(ref.substr(0, x));
        const char* v = prefix.empty() ? nullptr : find_entity(kHtml5Entities, prefix);
        if (v) {
          append_utf8(out, v);
          out += ref.substr(x);
          found = true;
          break;
        }
      }
      if (!found) {
        out += U'&';
        out += ref;
      }
    }
    i = e;
  }
  return out;
}

std::u32string ftfy_fix_text(std::u32string_view text) {
  constexpr size_t kMaxDecodeLength = 1'000'000;  // ftfy's default segment bound
  std::u32string out;
  bool unescape = true;  // "auto": off from the first segment holding '<' on
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(U'\n', pos);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    if (end - pos > kMaxDecodeLength) end = pos + kMaxDecodeLength;
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (unescape && segment.find(U'<') != std::u32string_view::npos) unescape = false;
    out += fix_segment(std::u32string(segment), unescape);
    pos = end;
  }
  return out;
}

std::u32string whitespace_clean(std::u32string_view text) {
  std::u32string out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && python_isspace(text[i])) ++i;
    size_t j = i;
    while (j < text.size() && !python_isspace(text[j])) ++j;
    if (j > i) {
      if (!out.empty()) out += U' ';
      out += text.substr(i, j - i);
    }
    i = j;
  }
  return out;
}

std::string open_clip_clean(std::string_view text) {
  const std::u32string fixed = ftfy_fix_text(utf8_decode(text));
  // strip() then " ".join(split()).strip(): the join already drops the ends.
  return utf8_encode(whitespace_clean(html_unescape(html_unescape(fixed))));
}

}  // namespace medquant::text
