// medquant tokenize: BERT WordPiece ids of texts, as open_clip's HFTokenizer
// gives them to BiomedCLIP's text tower (or as plain BertTokenizer does).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "text/clean.h"
#include "text/wordpiece.h"

namespace medquant::cli {
namespace {

struct TokenizeOptions {
  std::string vocab;
  std::vector<std::string> texts;
  size_t max_length = 0;  // 0: no padding or truncation
  bool json = false;
  bool no_clean = false;
  bool tokens = false;
};

int run_tokenize(const TokenizeOptions& o) {
  const text::BertTokenizer tok = text::BertTokenizer::from_file(o.vocab);
  std::vector<std::string> texts;
  for (const std::string& t : o.texts) {
    if (t != "-") {
      texts.push_back(t);
      continue;
    }
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      texts.push_back(line);
    }
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& raw = texts[i];
    const std::string input = with_context(fmt::format("input {}", i + 1), [&] {
      return o.no_clean ? raw : text::open_clip_clean(raw);
    });
    std::vector<int32_t> ids;
    if (o.max_length > 0) {
      ids = tok.encode_padded(input, o.max_length);
    } else {
      ids.push_back(tok.cls_id());
      for (int32_t id : tok.encode(input)) ids.push_back(id);
      ids.push_back(tok.sep_id());
    }
    std::vector<std::string> pieces;
    if (o.tokens || o.json)
      for (int32_t id : ids) pieces.push_back(tok.vocab().token(id));
    if (o.json) {
      out.push_back({{"text", raw}, {"ids", ids}, {"tokens", pieces}});
    } else if (o.tokens) {
      fmt::print("{}\n", fmt::join(pieces, " "));
    } else {
      fmt::print("{}\n", fmt::join(ids, " "));
    }
  }
  if (o.json) fmt::print("{}\n", out.dump());
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "tokenize",
      "Print BERT WordPiece ids of texts as open_clip's HFTokenizer makes them for BiomedCLIP "
      "(text cleaning, [CLS] ... [SEP]; with --max-length, truncated and [PAD]ded)");
  auto o = std::make_shared<TokenizeOptions>();
  app->add_option("--vocab", o->vocab, "vocab.txt of the text model")->required();
  app->add_option("texts", o->texts, "Texts to tokenize; '-' reads one text per line from stdin")
      ->required();
  app->add_option("--max-length", o->max_length,
                  "Pad with [PAD] / truncate (keeping [SEP]) to N ids; BiomedCLIP uses 256")
      ->check(CLI::Range(size_t{2}, size_t{1} << 20));
  app->add_flag("--no-clean", o->no_clean,
                "Skip open_clip's text cleaning (ftfy, HTML entities, whitespace): what "
                "transformers' BertTokenizer alone gives");
  app->add_flag("--tokens", o->tokens, "Print the word pieces instead of the ids");
  app->add_flag("--json", o->json, "Print one JSON array of {text, ids, tokens}");
  commands.push_back({app, [o]() -> int { return run_tokenize(*o); }});
}

}  // namespace medquant::cli
