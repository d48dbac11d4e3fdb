// BERT's WordPiece tokenizer, identical to Hugging Face's BertTokenizer (the
// slow, Python one) for uncased vocabularies: do_lower_case=True,
// tokenize_chinese_chars=True, strip_accents=None (follows lower-casing).
//
// On-disk layout of vocab.txt: UTF-8 text, one token per line; a token's id
// is its line number counted from 0. Lines end in "\n", "\r\n" or "\r" (all
// three end a line, as Python's text mode reads them); the last line may
// lack its newline; an empty line is the token "". If a token appears twice,
// the later line's id wins (as in the Python dict the reference builds).
// Continuation pieces start with "##". The special tokens are found by name:
// [UNK], [CLS], [SEP], [PAD] must exist; [MASK] may.
//
// What tokenize() does, in the reference's order:
//   1. split the text around the special tokens written literally in it
//      ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", case-sensitive); they
//      become their own ids. Each other piece goes through 2-7.
//   2. lower-case every character (Python str.lower, one character at a time)
//   3. clean: drop U+0000, U+FFFD and every character of category C* (Cc,
//      Cf, Cn, Co, Cs) except \t \n \r; turn \t \n \r and category Zs into " "
//   4. put spaces around CJK ideographs (U+4E00-9FFF, 3400-4DBF,
//      20000-2A6DF, 2A700-2B73F, 2B740-2B81F, 2B820-2CEAF, F900-FAFF,
//      2F800-2FA1F; not Hangul, Hiragana or Katakana)
//   5. NFC, then split on Python whitespace (str.split())
//   6. per word: lower-case again, NFD, drop combining marks (Mn); then split
//      off every punctuation character as its own word (ASCII 33-47, 58-64,
//      91-96, 123-126, and categories P*)
//   7. WordPiece per word: greedy longest match from the left, continuation
//      pieces prefixed "##"; a word with no full cover, or longer than 100
//      code points, becomes [UNK].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace medquant::text {

class Vocab {
 public:
  // Reads vocab.txt; throws Error naming the file (and line, for bad UTF-8).
  static Vocab load(const std::string& path);
  // From the file's text (for tests and embedded vocabularies).
  static Vocab parse(std::string_view contents, const std::string& name = "vocab");

  int32_t find(std::string_view token) const;  // -1 if absent
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
};

struct BertOptions {
  bool lowercase = true;  // uncased vocabularies (the only kind BiomedCLIP uses)
  size_t max_chars_per_word = 100;
};

class BertTokenizer {
 public:
  explicit BertTokenizer(Vocab vocab, BertOptions options = {});
  static BertTokenizer from_file(const std::string& vocab_path, BertOptions options = {}) {
    return BertTokenizer(Vocab::load(vocab_path), options);
  }

  // Word pieces (step 1-7 above), special tokens kept as written.
  std::vector<std::string> tokenize(std::string_view text) const;
  // Their ids, without [CLS]/[SEP].
  std::vector<int32_t> encode(std::string_view text) const;
  // [CLS] ids [SEP], as tokenizer(text, padding="max_length", truncation=True,
  // max_length=N) gives: ids cut to N-2 (so [SEP] stays), then [PAD] up to N.
  std::vector<int32_t> encode_padded(std::string_view text, size_t max_length) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t cls_id() const { return cls_; }
  int32_t sep_id() const { return sep_; }
  int32_t pad_id() const { return pad_; }
  int32_t unk_id() const { return unk_; }

 private:
  void basic_tokenize(std::u32string_view text, std::vector<std::u32string>& words) const;
  void wordpiece(const std::u32string& word, std::vector<std::string>& out) const;

  Vocab vocab_;
  BertOptions options_;
  int32_t cls_ = -1, sep_ = -1, pad_ = -1, unk_ = -1, mask_ = -1;
  std::vector<std::u32string> specials_;  // matched literally in the text
};

// The CJK ideograph ranges of step 4.
bool is_cjk_ideograph(char32_t c);
// Step 6's punctuation.
bool is_bert_punctuation(char32_t c);

}  // namespace medquant::text
