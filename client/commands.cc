#include "client/commands.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ftd::client {

const std::vector<Command>& Commands() {
  static const auto* const commands = new std::vector<Command>{
      {"submit",
       "submit [JOB_FILE] [flags]",
       "submit a fine-tuning job (uploading local files first)",
       "Submits a job from a job file (YAML or JSON with the fields of JobSpec, see\n"
       "examples/demo-job.yaml) and/or flags; flags override the file. A local --model\n"
       "folder, --train or --validation file is uploaded first (the same bytes are stored\n"
       "once); file-N names an upload; with --upload=false they are paths on the\n"
       "daemon's machine, inside its data roots.",
       {"file",
        "model",
        "train",
        "validation",
        "upload",
        "text_column",
        "label_column",
        "epochs",
        "batch_size",
        "learning_rate",
        "warmup_ratio",
        "weight_decay",
        "max_seq_length",
        "seed",
        "evaluations_per_epoch",
        "checkpoint_every_steps",
        "precision",
        "freeze",
        "freeze_through_first_above",
        "max_layers_per_decision",
        "freeze_smoothing",
        "freeze_keep_trainable",
        "freeze_start",
        "export",
        "cache",
        "cache_dtype",
        "device",
        "devices",
        "efficiency",
        "efficiency_max_step_ratio",
        "priority",
        "name",
        "labels",
        "request_id",
        "watch"},
       {"ftctl submit examples/demo-job.yaml --watch",
        "ftctl submit --model=./bert --train=train.csv --validation=valid.csv \\\n"
        "      --epochs=4 --freeze=autofreeze --cache=true",
        "ftctl submit --model=file-1 --train=file-2 --request_id=nightly-2026-12-02",
        "ftctl submit examples/demo-job.yaml --device=cpu --devices=2"}},
      {"get",
       "get JOB_ID",
       "show a job: state, spec, progress, freezing, cache, result",
       "Shows one job as the daemon has it now.",
       {},
       {"ftctl get job-3", "ftctl get job-3 --json"}},
      {"list",
       "list [flags]",
       "list jobs, newest first",
       "Lists jobs a page at a time, newest first; the next page's token is printed\n"
       "on stderr.",
       {"state", "labels", "page_size", "page_token", "all", "order_by"},
       {"ftctl list --state=queued,running", "ftctl list --labels=team=nlp --all",
        "ftctl list --order_by=create_time"}},
      {"watch",
       "watch JOB_ID",
       "follow a job's events until it ends",
       "Prints the job's events so far, then live ones, until it ends. Exit code:\n"
       "0 it SUCCEEDED, 4 it FAILED, 3 it was CANCELLED, 1 the connection was lost\n"
       "or the request failed (the job's outcome is unknown: watch again).",
       {},
       {"ftctl watch job-3", "ftctl watch job-3 --json | jq .progress"}},
      {"cancel",
       "cancel JOB_ID",
       "cancel a queued or running job",
       "Cancels a queued job at once; a running one stops at its next step.",
       {},
       {"ftctl cancel job-3"}},
      {"delete",
       "delete JOB_ID",
       "delete an ended job, its outputs and the cache segments only it used",
       "Deletes an ended job's record, events and output folder (model, metrics,\n"
       "checkpoints), and the activation cache segments it read or wrote that no\n"
       "unfinished job uses. A queued or running job must be cancelled first.",
       {},
       {"ftctl delete job-3"}},
      {"events",
       "events JOB_ID [flags]",
       "page through a job's event history",
       "Prints a page of the job's recorded events.",
       {"page_size", "page_token"},
       {"ftctl events job-3 --page_size=20"}},
      {"info",
       "info",
       "the daemon's version, devices and queue",
       "Shows the daemon's version, its devices and what runs on them, and the queue.",
       {},
       {"ftctl info"}},
      {"cache",
       "cache [JOB_ID] | cache clear JOB_ID",
       "the activation cache; clear a job's segments",
       "Without a job id: the cache's size, cap and segments. With one: that job's use\n"
       "of it. `cache clear JOB_ID` deletes the segments the job read or wrote, except\n"
       "those a running job uses.",
       {},
       {"ftctl cache", "ftctl cache job-3", "ftctl cache clear job-3"}},
      {"health",
       "health [SERVICE]",
       "the gRPC health check (exit 0 when SERVING)",
       "Asks grpc.health.v1.Health: the server as a whole, or SERVICE (for example\n"
       "ftd.v1.FineTuning). Exit 0 when SERVING, for probes.",
       {},
       {"ftctl health", "ftctl health ftd.v1.FineTuning"}},
      {"upload",
       "upload FILE|DIR [flags]",
       "upload a dataset file or a model folder; prints its file id",
       "Uploads a dataset (CSV or JSONL) or a Hugging Face model folder (config.json,\n"
       "vocab.txt, tokenizer files, safetensors shards), checked by SHA-256 and by\n"
       "content. Jobs then name it by its id (file-N).",
       {"name", "format"},
       {"ftctl upload train.csv", "ftctl upload ./bert-mini --name=bert-mini"}},
      {"files",
       "files [FILE_ID] [flags] | files delete FILE_ID",
       "list, describe or delete uploaded files",
       "Without an id: every uploaded file, newest first, and the storage used. With\n"
       "one: that file. `files delete` removes a file no queued or running job uses.",
       {"kind"},
       {"ftctl files", "ftctl files --kind=model", "ftctl files file-3",
        "ftctl files delete file-3"}},
      {"download",
       "download JOB_ID DIR [flags]",
       "write a succeeded job's fine-tuned model (or metrics) into DIR",
       "Downloads a succeeded job's output into DIR (which must not exist or be\n"
       "empty), checking every file's SHA-256. The model folder loads where the base\n"
       "model did (Hugging Face transformers, or another ftd job).",
       {"artifact"},
       {"ftctl download job-3 ./fine-tuned", "ftctl download job-3 ./m --artifact=metrics"}},
      {"help",
       "help [COMMAND]",
       "this help, or a command's",
       "Shows the commands, or one command's flags and examples.",
       {},
       {"ftctl help submit", "ftctl submit --help"}},
      {"version",
       "version",
       "ftctl's version (also --version)",
       "Prints ftctl's version.",
       {},
       {"ftctl --version"}},
  };
  return *commands;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

const std::vector<std::string>& GlobalFlags() {
  static const auto* const flags =
      new std::vector<std::string>{"address",         "tls",        "tls_ca", "tls_cert", "tls_key",
                                   "tls_server_name", "token_file", "json",   "timeout"};
  return *flags;
}

namespace {

// Insertions, deletions, substitutions and swaps of neighbours ("lsit").
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

void AppendFlags(const std::vector<std::string>& flags, const FlagDescriber& describe,
                 std::string* out) {
  for (const std::string& flag : flags) {
    std::string line = absl::StrCat("  --", flag);
    line.resize(std::max<size_t>(line.size() + 2, 30), ' ');
    absl::StrAppend(out, line, describe(flag), "\n");
  }
}

}  // namespace

std::string Nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 0;
  for (const std::string& candidate : candidates) {
    const size_t d = EditDistance(word, candidate);
    if (best.empty() || d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  if (best.empty() || best_distance > 2 || 2 * best_distance >= word.size()) return "";
  return best;
}

std::string GeneralHelp(const FlagDescriber& describe) {
  std::string out =
      "ftctl: the client of ftd, the fine-tuning daemon.\n\n"
      "Usage: ftctl COMMAND [ARGS] [flags]\n\nCommands:\n";
  for (const Command& command : Commands()) {
    std::string line = absl::StrCat("  ", command.name);
    line.resize(std::max<size_t>(line.size() + 2, 12), ' ');
    absl::StrAppend(&out, line, command.summary, "\n");
  }
  absl::StrAppend(&out, "\nGlobal flags:\n");
  AppendFlags(GlobalFlags(), describe, &out);
  absl::StrAppend(&out,
                  "\nExit codes: 0 success; 1 a request failed or the connection was lost; 2 a "
                  "bad\ncommand line or job file; 3 the watched job was CANCELLED; 4 it FAILED.\n\n"
                  "`ftctl help COMMAND` or `ftctl COMMAND --help` shows a command's flags and "
                  "examples.\n");
  return out;
}

std::string CommandHelp(const Command& command, const FlagDescriber& describe) {
  std::string out = absl::StrCat("Usage: ftctl ", command.synopsis, "\n\n", command.details, "\n");
  if (!command.flags.empty()) {
    absl::StrAppend(&out, "\nFlags:\n");
    AppendFlags(command.flags, describe, &out);
  }
  absl::StrAppend(&out, "\nGlobal flags:\n");
  AppendFlags(GlobalFlags(), describe, &out);
  absl::StrAppend(&out, "\nExamples:\n");
  for (const std::string& example : command.examples) absl::StrAppend(&out, "  ", example, "\n");
  return out;
}

}  // namespace ftd::client
