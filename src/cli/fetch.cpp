// medquant fetch <repo-id>: a model from the Hugging Face Hub into the shared
// huggingface_hub cache (resumable, verified); prints the snapshot folder.
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "core/log.h"
#include "hub/fetch.h"

namespace medquant::cli {

void add_fetch_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "fetch",
      "Download a model repo from the Hugging Face Hub into the huggingface_hub cache "
      "($HF_HOME/hub), checking every file's sha256 / git blob id; prints the snapshot folder.\n"
      "Environment: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE=1, "
      "HF_HUB_DOWNLOAD_TIMEOUT, http_proxy/https_proxy/no_proxy.");
  struct Args {
    hub::FetchOptions fetch;
    std::string token, cache_dir;
    bool offline = false;
    int retries = -1;
  };
  auto a = std::make_shared<Args>();
  app->add_option("repo-id", a->fetch.repo_id, "Repository, e.g. google/medgemma-4b-it")->required();
  app->add_option("--revision", a->fetch.revision, "Branch, tag or commit sha")
      ->default_val("main");
  app->add_option("--include", a->fetch.include,
                  "Only files matching this glob (repeatable; '*' crosses '/', 'dir/' = a folder)");
  app->add_option("--exclude", a->fetch.exclude, "Skip files matching this glob (repeatable)");
  app->add_option("--local-dir", a->fetch.local_dir,
                  "Also put the files in this plain folder (copies; see --link)");
  app->add_flag("--link", a->fetch.local_dir_symlinks,
                "With --local-dir: symlink into the cache instead of copying");
  app->add_option("--token", a->token,
                  "Hub access token (default: $HF_TOKEN, else $HF_HOME/token); needed for gated "
                  "models such as MedGemma once their licence is accepted on the hub");
  app->add_option("--cache-dir", a->cache_dir, "Cache folder (default: $HF_HUB_CACHE or $HF_HOME/hub)");
  app->add_flag("--offline", a->offline, "Use the cache only, as HF_HUB_OFFLINE=1 does");
  app->add_option("-j,--jobs", a->fetch.jobs, "Files downloaded at once")
      ->default_val(4)
      ->check(CLI::Range(1, 64));
  app->add_option("--retries", a->retries,
                  "Attempts after a failure (connection, 429, 5xx) before giving up (default 5)")
      ->check(CLI::Range(0, 100));
  commands.push_back({app, [a]() -> int {
                        hub::HubSettings s = hub::HubSettings::from_environment();
                        if (!a->token.empty()) s.token = a->token;
                        if (!a->cache_dir.empty()) s.cache_dir = a->cache_dir;
                        if (a->offline) s.offline = true;
                        if (a->retries >= 0) s.max_retries = a->retries;
                        hub::FetchResult r = hub::fetch(a->fetch, s);
                        size_t downloaded = 0;
                        for (const auto& f : r.files) downloaded += f.downloaded;
                        core::log_info("{}@{}: {} file(s), {} downloaded ({}), {} from the cache{}",
                                       a->fetch.repo_id, r.commit, r.files.size(), downloaded,
                                       core::human_bytes(r.bytes_downloaded),
                                       r.files.size() - downloaded,
                                       r.offline ? " (offline)" : "");
                        fmt::print("{}\n", r.local_dir.empty() ? r.snapshot_dir : r.local_dir);
                        return 0;
                      }});
}

}  // namespace medquant::cli
