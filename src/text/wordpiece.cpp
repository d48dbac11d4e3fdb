#include "text/wordpiece.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "text/unicode.h"

namespace medquant::text {

bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_bert_punctuation(char32_t c) {
  // All non-alphanumeric ASCII counts, though "$", "^", "`"... are symbols in Unicode.
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126))
    return true;
  return is_category(c, 'P');
}

// ---- vocabulary -----------------------------------------------------------------

Vocab Vocab::parse(std::string_view contents, const std::string& name) {
  Vocab v;
  size_t line = 0;
  size_t start = 0;
  auto add = [&](size_t end) {
    std::string token(contents.substr(start, end - start));
    utf8_decode(token, fmt::format("{}: line {}", name, line + 1));  // validates
    v.ids_[token] = static_cast<int32_t>(v.tokens_.size());  // a repeated token: the later id wins
    v.tokens_.push_back(std::move(token));
    ++line;
  };
  for (size_t i = 0; i < contents.size(); ++i) {
    if (contents[i] == '\n') {
      add(i);
      start = i + 1;
    } else if (contents[i] == '\r') {  // Python's universal newlines: \r\n and \r end a line too
      add(i);
      if (i + 1 < contents.size() && contents[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < contents.size()) add(contents.size());
  if (v.tokens_.size() > static_cast<size_t>(INT32_MAX)) fail("{}: too many tokens", name);
  return v;
}

Vocab Vocab::load(const std::string& path) {
  Vocab v = parse(core::read_text_file(path), path);
  if (v.size() == 0) fail("{}: empty vocabulary", path);
  return v;
}

int32_t Vocab::find(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

// ---- tokenizer ------------------------------------------------------------------

BertTokenizer::BertTokenizer(Vocab vocab, BertOptions options)
    : vocab_(std::move(vocab)), options_(options) {
  auto need = [&](const char* name) {
    const int32_t id = vocab_.find(name);
    if (id < 0) fail("vocabulary has no {} token", name);
    return id;
  };
  unk_ = need("[UNK]");
  cls_ = need("[CLS]");
  sep_ = need("[SEP]");
  pad_ = need("[PAD]");
  mask_ = vocab_.find("[MASK]");
  for (const char* s : {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"})
    if (vocab_.find(s) >= 0) specials_.push_back(utf8_decode(s));
}

// Steps 3-6 on one piece of text between special tokens (already lower-cased).
void BertTokenizer::basic_tokenize(std::u32string_view text,
                                   std::vector<std::u32string>& words) const {
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0 || c == 0xFFFD) continue;
    const std::string_view cat = category(c);
    if (c == '\t' || c == '\n' || c == '\r' || cat == "Zs") {
      cleaned += U' ';
    } else if (cat[0] == 'C') {
      continue;
    } else if (is_cjk_ideograph(c)) {
      cleaned += U' ';
      cleaned += c;
      cleaned += U' ';
    } else {
      cleaned += c;
    }
  }
  const std::u32string normalized = nfc(cleaned);

  std::u32string word;
  auto flush_word = [&]() {
    if (word.empty()) return;
    std::u32string token;
    bool special = false;
    for (const auto& s : specials_) special |= word == s;
    if (special) {
      token = word;  // never_split: kept as is
    } else if (options_.lowercase) {
      std::u32string lowered;
      for (char32_t c : word) python_lower(c, lowered);
      for (char32_t c : nfd(lowered))
        if (category(c) != "Mn") token += c;
    } else {
      token = word;
    }
    word.clear();
    if (special) {
      words.push_back(std::move(token));
      return;
    }
    // Punctuation split; the pieces are then split on whitespace again.
    std::u32string piece;
    auto flush_piece = [&]() {
      if (!piece.empty()) words.push_back(std::move(piece));
      piece.clear();
    };
    for (char32_t c : token) {
      if (is_bert_punctuation(c)) {
        flush_piece();
        words.push_back(std::u32string(1, c));
      } else if (python_isspace(c)) {
        flush_piece();
      } else {
        piece += c;
      }
    }
    flush_piece();
  };
  for (char32_t c : normalized) {
    if (python_isspace(c)) flush_word();
    else word += c;
  }
  flush_word();
}

void BertTokenizer::wordpiece(const std::u32string& word, std::vector<std::string>& out) const {
  if (word.size() > options_.max_chars_per_word) {
    out.push_back(vocab_.token(unk_));
    return;
  }
  std::vector<std::string> pieces;
  size_t start = 0;
  std::string candidate;
  while (start < word.size()) {
    size_t end = word.size();
    bool found = false;
    while (start < end) {
      candidate.assign(start > 0 ? "##" : "");
      for (size_t i = start; i < end; ++i) utf8_append(candidate, word[i]);
      if (vocab_.find(candidate) >= 0) {
        found = true;
        break;
      }
      --end;
    }
    if (!found) {
      out.push_back(vocab_.token(unk_));
      return;
    }
    pieces.push_back(candidate);
    start = end;
  }
  for (auto& p : pieces) out.push_back(std::move(p));
}

std::vector<std::string> BertTokenizer::tokenize(std::string_view text_utf8) const {
  const std::u32string text = utf8_decode(text_utf8);
  std::vector<std::string> out;
  std::vector<std::u32string> words;
  auto run = [&](std::u32string_view part) {
    if (part.empty()) return;
    std::u32string lowered;
    if (options_.lowercase) {
      lowered.reserve(part.size());
      for (char32_t c : part) python_lower(c, lowered);
      part = lowered;
    }
    words.clear();
    basic_tokenize(part, words);
    for (const auto& w : words) {
      bool special = false;
      for (const auto& s : specials_) special |= w == s;
      if (special) out.push_back(utf8_encode(w));
      else wordpiece(w, out);
    }
  };
  // Step 1: special tokens written in the text, leftmost first.
  size_t begin = 0;
  for (size_t i = 0; i < text.size();) {
    const std::u32string* hit = nullptr;
    for (const auto& s : specials_)
      if (std::u32string_view(text).substr(i, s.size()) == s) hit = &s;
    if (!hit) {
      ++i;
      continue;
    }
    run(std::u32string_view(text).substr(begin, i - begin));
    out.push_back(utf8_encode(*hit));
    i += hit->size();
    begin = i;
  }
  run(std::u32string_view(text).substr(begin));
  return out;
}

std::vector<int32_t> BertTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const auto& piece : tokenize(text)) {
    const int32_t id = vocab_.find(piece);
    ids.push_back(id >= 0 ? id : unk_);
  }
  return ids;
}

std::vector<int32_t> BertTokenizer::encode_padded(std::string_view text, size_t max_length) const {
  if (max_length < 2) fail("max_length {} leaves no room for [CLS] and [SEP]", max_length);
  std::vector<int32_t> body = encode(text);
  if (body.size() > max_length - 2) body.resize(max_length - 2);
  std::vector<int32_t> ids;
  ids.reserve(max_length);
  ids.push_back(cls_);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(sep_);
  ids.resize(max_length, pad_);
  return ids;
}

}  // namespace medquant::text
