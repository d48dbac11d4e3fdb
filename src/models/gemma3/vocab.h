// The Gemma 3 tokenizer in GGUF, as convert_hf_to_gguf.py writes it
// (TextModel._set_vocab_sentencepiece and gguf-py's SpecialVocab):
//
//   tokenizer.ggml.model = "llama", tokenizer.ggml.pre = "default"
//   tokenizer.ggml.tokens / scores / token_type   one entry per id, vocab_size
//       of them (config.json): the SentencePiece pieces of tokenizer.model
//       (type NORMAL 1, UNKNOWN 2, CONTROL 3, UNUSED 5 or BYTE 6 from the
//       piece type; user-defined pieces count as NORMAL), then the ids above
//       the model as "[PAD<id>]" (score -10000, UNUSED); added_tokens.json and
//       tokenizer_config.json's added_tokens_decoder overwrite their ids
//       (score -1000; CONTROL if "special" or the text looks special, else
//       USER_DEFINED 4 with U+2581 turned into spaces)
//   tokenizer.ggml.<bos|eos|unknown|seperator|padding|mask>_token_id   from
//       tokenizer_config.json's *_token looked up in tokenizer.json's
//       added_tokens, else config.json's *_token_id
//   tokenizer.ggml.add_<bos|eos|sep>_token   from tokenizer.json's
//       post_processor (TemplateProcessing read crudely, as SpecialVocab
//       does), else tokenizer_config.json's add_*_token
//   tokenizer.chat_template   tokenizer_config.json's chat_template, else
//       chat_template.jinja, else chat_template.json
//   tokenizer.ggml.normalizer.*   from tokenizer.json's normalizer
//   tokenizer.ggml.add_space_prefix = false
//
// tokenizer.model is read by sentencepiece.h (the protobuf fields the
// vocabulary needs), checked against libsentencepiece in the unit tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/gemma3/kv_list.h"

namespace medquant::models::gemma3 {

// SentencePiece token types as GGUF stores them (llama_token_type).
enum class TokenType : int32_t {
  Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct Vocab {
  std::vector<std::string> tokens;  // UTF-8 bytes of each piece
  std::vector<float> scores;
  std::vector<int32_t> types;
};

// _create_vocab_sentencepiece: <dir>/tokenizer.model (Error if missing or
// unreadable) + added tokens, `vocab_size` entries (config.json's; 0 means
// the tokenizer's own size).
Vocab read_vocab(const std::string& dir, int64_t vocab_size);

// Sets the tokenizer keys, in the reference's order, for `vocab`.
void add_vocab_kvs(KvList& kv, const std::string& dir, const Vocab& vocab);

}  // namespace medquant::models::gemma3
