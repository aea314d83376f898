// ftctl: submit and follow ftd fine-tuning jobs. Parses flags and calls the
// client library.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/ftctl.h"
#include "client/job_file.h"
#include "client/spec_options.h"
#include "common/address.h"
#include "common/fs_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"

// Global flags.
ABSL_FLAG(std::string, address, "",
          "the daemon's gRPC address (default: $FTD_ADDRESS, else 127.0.0.1:50051)");
ABSL_FLAG(bool, tls, false,
          "connect with TLS, verifying the daemon's certificate against the system's CAs (or "
          "--tls_ca); also $FTD_TLS=1");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle the daemon's certificate must chain to (implies --tls; $FTD_TLS_CA)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate for mutual TLS, with --tls_key ($FTD_TLS_CERT)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert ($FTD_TLS_KEY)");
ABSL_FLAG(std::string, tls_server_name, "",
          "the name the daemon's certificate must carry, when not the address's host");
ABSL_FLAG(std::string, token_file, "",
          "a file holding the bearer token to authenticate with (else $FTD_TOKEN); never "
          "give the token itself on the command line");
ABSL_FLAG(bool, json, false, "print JSON (watch and events: one event a line)");
ABSL_FLAG(int, timeout, 30, "seconds to wait for a reply (not for watch)");

// submit: a job file and/or flags; flags override the file.
ABSL_FLAG(std::string, file, "", "submit: a YAML or JSON job file");
ABSL_FLAG(std::string, model, "",
          "submit: folder of the base model (Hugging Face checkpoint), or an uploaded model's id");
ABSL_FLAG(std::string, train, "",
          "submit: training dataset (.csv or .jsonl), or an uploaded dataset's id");
ABSL_FLAG(std::string, validation, "",
          "submit: validation dataset (.csv or .jsonl), or an uploaded dataset's id");
ABSL_FLAG(bool, upload, true,
          "submit: upload --model, --train and --validation from this machine first (false: "
          "they are paths on the daemon's machine, inside its data roots)");
ABSL_FLAG(std::string, format, "",
          "upload: a dataset's format, csv or jsonl (default: from its name)");
ABSL_FLAG(std::string, kind, "", "files: only datasets or models");
ABSL_FLAG(std::string, artifact, "model",
          "download: model (the fine-tuned model's folder) or metrics");
ABSL_FLAG(std::string, text_column, "", "submit: text column (default text)");
ABSL_FLAG(std::string, label_column, "", "submit: label column (default label)");
ABSL_FLAG(std::optional<int>, epochs, std::nullopt, "submit: epochs (default 3)");
ABSL_FLAG(std::optional<int>, batch_size, std::nullopt, "submit: batch size (default 32)");
ABSL_FLAG(std::optional<double>, learning_rate, std::nullopt, "submit: learning rate (5e-5)");
ABSL_FLAG(std::optional<double>, warmup_ratio, std::nullopt, "submit: warm-up ratio (0)");
ABSL_FLAG(std::optional<double>, weight_decay, std::nullopt, "submit: weight decay (0.01)");
ABSL_FLAG(std::optional<int>, max_seq_length, std::nullopt, "submit: max sequence length");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "submit: random seed (0)");
ABSL_FLAG(std::optional<int>, evaluations_per_epoch, std::nullopt,
          "submit: validation runs an epoch, evenly spaced (1)");
ABSL_FLAG(std::optional<int>, checkpoint_every_steps, std::nullopt,
          "submit: a checkpoint every N training steps, besides the daemon's by time (0: none)");
ABSL_FLAG(std::string, freeze, "",
          "submit: none | static:K | autofreeze[:PERCENTILE[:EVALS_PER_EPOCH]] | "
          "geometric[:ALPHA] | linear[:START[:LEVEL]]");
ABSL_FLAG(std::optional<bool>, freeze_through_first_above, std::nullopt,
          "submit, autofreeze: the first layer at or above the threshold freezes too");
ABSL_FLAG(std::optional<int>, max_layers_per_decision, std::nullopt,
          "submit, autofreeze: layers one decision may freeze at most (0: no cap)");
ABSL_FLAG(std::optional<double>, freeze_smoothing, std::nullopt,
          "submit, autofreeze: moving-average factor of the gradient sums, [0, 1)");
ABSL_FLAG(std::optional<int>, freeze_keep_trainable, std::nullopt,
          "submit, autofreeze: the last K encoder layers never freeze (default 1)");
ABSL_FLAG(std::optional<double>, freeze_start, std::nullopt,
          "submit, autofreeze: no layer freezes before this fraction of training, [0, 1)");
ABSL_FLAG(std::string, export, "",
          "submit: the weights the job exports, best (its best validation point's; the default "
          "with --validation) or final");
ABSL_FLAG(std::optional<bool>, cache, std::nullopt, "submit: cache frozen activations");
ABSL_FLAG(std::string, cache_dtype, "", "submit: the cache's stored dtype, bf16 (default) or fp32");
ABSL_FLAG(std::string, device, "", "submit: any | cpu | cuda:N");
ABSL_FLAG(std::optional<int>, devices, std::nullopt,
          "submit: train on this many devices at once, data-parallel, one replica a device, all "
          "of --device's kind (1)");
ABSL_FLAG(std::optional<bool>, efficiency, std::nullopt,
          "submit, with --devices: continue on fewer devices once freezing makes a step cheap "
          "enough, giving the others back to the queue (efficiency mode)");
ABSL_FLAG(std::optional<double>, efficiency_max_step_ratio, std::nullopt,
          "submit, efficiency mode: the predicted step on fewer devices may take this many times "
          "the job's step before its first freeze (1)");
ABSL_FLAG(std::string, precision, "",
          "submit: fp32 (default) | bf16 (bf16 matrix products, fp32 master weights) | auto "
          "(bf16 where the daemon measures it faster for the job's shapes)");
ABSL_FLAG(std::optional<int>, priority, std::nullopt, "submit: priority, higher runs first");
ABSL_FLAG(std::string, name, "", "submit, upload: display name");
ABSL_FLAG(std::vector<std::string>, labels, {}, "submit, list: labels key=value,key=value");
ABSL_FLAG(std::string, request_id, "", "submit: id that makes resubmission idempotent");
ABSL_FLAG(bool, watch, false, "submit: watch the job after submitting it");

// list and events.
ABSL_FLAG(std::vector<std::string>, state, {}, "list: only jobs in these states");
ABSL_FLAG(int, page_size, 0, "list, events: page size");
ABSL_FLAG(std::string, page_token, "", "list, events: the page to start at");
ABSL_FLAG(bool, all, false, "list: every page");
ABSL_FLAG(std::string, order_by, "",
          "list: \"create_time desc\" (newest first, the default) or \"create_time\"");

namespace {

// The standard gRPC health check (grpc.health.v1.Health/Check), as
// container health checks and probes use it.
int Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
           std::chrono::seconds timeout) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "ftctl: health: " << ftd::client::StatusCodeName(status.error_code()) << ": "
              << status.error_message() << "\n";
    return ftd::client::kExitError;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? ftd::client::kExitOk
             : ftd::client::kExitError;
}

int UsageError(const std::string& message) {
  std::cerr << "ftctl: " << message << "\n(ftctl --help for usage)\n";
  return ftd::client::kExitUsage;
}

// A flag's help without the "submit, list: " prefix that says where it
// applies, and its default.
std::string DescribeFlag(const std::string& name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return "";
  std::string help = flag->Help();
  if (const size_t colon = help.find(": ");
      colon != std::string::npos &&
      help.find_first_not_of("abcdefghijklmnopqrstuvwxyz, ") == colon) {
    help = help.substr(colon + 2);
  }
  const std::string default_value = flag->DefaultValue();
  if (!default_value.empty() && default_value != "0" && default_value != "false") {
    absl::StrAppend(&help, " (default: ", default_value, ")");
  }
  return help;
}

// absl's own flags, taken anywhere.
bool IsAbslFlag(const std::string& name) {
  for (const char* f : {"helpfull", "helpshort", "helppackage", "helpon", "helpmatch",
                        "only_check_args", "flagfile", "fromenv", "tryfromenv", "undefok"}) {
    if (name == f) return true;
  }
  return false;
}

// Help, the version, and the checks absl's parser does not make: the
// command exists and takes the flags given, with the nearest name for a
// typo. Returns the exit code when ftctl should stop here.
std::optional<int> HelpVersionAndChecks(int argc, char** argv) {
  using ftd::client::Command;
  std::vector<std::string> positional, flags;
  bool help = false, version = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional.push_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    const bool has_value = name.find('=') != std::string::npos;
    name = name.substr(0, name.find('='));
    if (name == "help" || name == "h") {
      help = true;
      continue;
    }
    if (name == "version") {
      version = true;
      continue;
    }
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      const absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        name = name.substr(2);
        flag = negated;
      }
    }
    flags.push_back(name);
    // "--flag value": the value is the next argument.
    if (flag != nullptr && !has_value && !flag->IsOfType<bool>()) ++i;
  }
  std::vector<std::string> names;
  for (const Command& c : ftd::client::Commands()) names.push_back(c.name);
  auto unknown_command = [&](const std::string& name) {
    const std::string near = ftd::client::Nearest(name, names);
    return UsageError(
        absl::StrCat("unknown command \"", name, "\"",
                     near.empty() ? "" : absl::StrCat("; did you mean \"", near, "\"?")));
  };
  if (help || (!positional.empty() && positional[0] == "help")) {
    std::string target = positional.empty() ? "" : positional[0];
    if (target == "help" && positional.size() > 1) {
      target = positional[1];
    } else if (target == "help" && !help) {
      target = "";  // plain `ftctl help`
    }
    if (target.empty()) {
      std::cout << ftd::client::GeneralHelp(DescribeFlag);
      return ftd::client::kExitOk;
    }
    const Command* command = ftd::client::FindCommand(target);
    if (command == nullptr) return unknown_command(target);
    std::cout << ftd::client::CommandHelp(*command, DescribeFlag);
    return ftd::client::kExitOk;
  }
  if (version || (!positional.empty() && positional[0] == "version")) {
    std::cout << "ftctl " << FTD_VERSION << "\n";
    return ftd::client::kExitOk;
  }
  if (positional.empty()) {
    std::cerr << ftd::client::GeneralHelp(DescribeFlag);
    return UsageError("no command given");
  }
  const Command* command = ftd::client::FindCommand(positional[0]);
  if (command == nullptr) return unknown_command(positional[0]);
  const std::vector<std::string>& globals = ftd::client::GlobalFlags();
  for (const std::string& name : flags) {
    if (IsAbslFlag(name)) continue;
    const bool global = std::find(globals.begin(), globals.end(), name) != globals.end();
    const bool own =
        std::find(command->flags.begin(), command->flags.end(), name) != command->flags.end();
    if (global || own) continue;
    std::vector<std::string> candidates = command->flags;
    candidates.insert(candidates.end(), globals.begin(), globals.end());
    const std::string near = ftd::client::Nearest(name, candidates);
    const std::string hint = near.empty() ? "" : absl::StrCat("; did you mean --", near, "?");
    if (absl::FindCommandLineFlag(name) == nullptr) {
      return UsageError(absl::StrCat("unknown flag --", name, hint));
    }
    return UsageError(absl::StrCat("--", name, " is not a flag of ", command->name, hint,
                                   " (ftctl ", command->name, " --help shows its flags)"));
  }
  return std::nullopt;
}

std::string Absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  return std::filesystem::absolute(path, ec).lexically_normal().string();
}

bool IsFileId(const std::string& value) {
  if (value.size() < 6 || value.compare(0, 5, "file-") != 0) return false;
  for (size_t i = 5; i < value.size(); ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
  }
  return true;
}

// Local paths the submit flags name, to upload before submitting.
struct LocalInputs {
  std::string model, train, validation;
};

// The spec from the job file (if any) and the submit flags.
absl::StatusOr<ftd::v1::JobSpec> SpecFromFlags(const std::vector<std::string>& args,
                                               LocalInputs* local) {
  std::string file = absl::GetFlag(FLAGS_file);
  if (file.empty() && args.size() > 2) file = args[2];
  ftd::v1::JobSpec spec;
  if (!file.empty()) {
    absl::StatusOr<ftd::v1::JobSpec> parsed = ftd::client::ParseJobFile(file);
    if (!parsed.ok()) return parsed.status();
    spec = *std::move(parsed);
  }
  const bool upload = absl::GetFlag(FLAGS_upload);
  if (const std::string model = absl::GetFlag(FLAGS_model); !model.empty()) {
    spec.clear_base_model();
    spec.clear_base_model_file_id();
    if (IsFileId(model)) {
      spec.set_base_model_file_id(model);
    } else if (upload) {
      local->model = model;
    } else {
      spec.set_base_model(Absolute(model));
    }
  }
  for (auto [flag, dataset, path] :
       {std::tuple{absl::GetFlag(FLAGS_train), spec.mutable_train_dataset(), &local->train},
        std::tuple{absl::GetFlag(FLAGS_validation), spec.mutable_validation_dataset(),
                   &local->validation}}) {
    if (flag.empty()) continue;
    dataset->clear_path();
    dataset->clear_file_id();
    if (IsFileId(flag)) {
      dataset->set_file_id(flag);
    } else if (upload) {
      *path = flag;
    } else {
      dataset->set_path(Absolute(flag));
    }
  }
  for (auto [d, local_path] : {std::pair{spec.mutable_train_dataset(), &local->train},
                               std::pair{spec.mutable_validation_dataset(), &local->validation}}) {
    if (d->path().empty() && d->file_id().empty() && local_path->empty()) continue;
    if (!absl::GetFlag(FLAGS_text_column).empty())
      d->set_text_column(absl::GetFlag(FLAGS_text_column));
    if (!absl::GetFlag(FLAGS_label_column).empty()) {
      d->set_label_column(absl::GetFlag(FLAGS_label_column));
    }
  }
  if (spec.validation_dataset().path().empty() && spec.validation_dataset().file_id().empty() &&
      local->validation.empty()) {
    spec.clear_validation_dataset();
  }
  auto* hp = spec.mutable_hyperparameters();
  if (auto v = absl::GetFlag(FLAGS_epochs)) hp->set_epochs(*v);
  if (auto v = absl::GetFlag(FLAGS_batch_size)) hp->set_batch_size(*v);
  if (auto v = absl::GetFlag(FLAGS_learning_rate)) hp->set_learning_rate(*v);
  if (auto v = absl::GetFlag(FLAGS_warmup_ratio)) hp->set_warmup_ratio(*v);
  if (auto v = absl::GetFlag(FLAGS_weight_decay)) hp->set_weight_decay(*v);
  if (auto v = absl::GetFlag(FLAGS_max_seq_length)) hp->set_max_seq_length(*v);
  if (auto v = absl::GetFlag(FLAGS_seed)) hp->set_seed(*v);
  if (auto v = absl::GetFlag(FLAGS_evaluations_per_epoch)) hp->set_evaluations_per_epoch(*v);
  if (auto v = absl::GetFlag(FLAGS_checkpoint_every_steps)) hp->set_checkpoint_every_steps(*v);
  if (const std::string precision = absl::GetFlag(FLAGS_precision); !precision.empty()) {
    auto parsed = ftd::client::ParsePrecision(precision);
    if (!parsed.ok()) return parsed.status();
    hp->set_precision(*parsed);
  }
  if (const std::string e = absl::GetFlag(FLAGS_export); !e.empty()) {
    auto parsed = ftd::client::ParseExportWeights(e);
    if (!parsed.ok()) return parsed.status();
    spec.set_export_weights(*parsed);
  }
  if (!absl::GetFlag(FLAGS_freeze).empty()) {
    auto policy = ftd::client::ParseFreezePolicy(absl::GetFlag(FLAGS_freeze));
    if (!policy.ok()) return policy.status();
    *spec.mutable_freeze_policy() = *policy;
  }
  if (spec.freeze_policy().has_autofreeze()) {
    auto* af = spec.mutable_freeze_policy()->mutable_autofreeze();
    if (auto v = absl::GetFlag(FLAGS_freeze_through_first_above))
      af->set_freeze_through_first_above(*v);
    if (auto v = absl::GetFlag(FLAGS_max_layers_per_decision)) af->set_max_layers_per_decision(*v);
    if (auto v = absl::GetFlag(FLAGS_freeze_smoothing)) af->set_smoothing(*v);
    if (auto v = absl::GetFlag(FLAGS_freeze_keep_trainable)) af->set_keep_trainable(*v);
    if (auto v = absl::GetFlag(FLAGS_freeze_start)) af->set_start_fraction(*v);
  }
  if (auto v = absl::GetFlag(FLAGS_cache)) spec.mutable_activation_cache()->set_enabled(*v);
  if (const std::string dtype = absl::GetFlag(FLAGS_cache_dtype); !dtype.empty()) {
    if (dtype != "bf16" && dtype != "fp32") {
      return absl::InvalidArgumentError("--cache_dtype: must be bf16 or fp32, got \"" + dtype +
                                        "\"");
    }
    spec.mutable_activation_cache()->set_dtype(dtype == "fp32"
                                                   ? ftd::v1::ActivationCache::DTYPE_FP32
                                                   : ftd::v1::ActivationCache::DTYPE_BF16);
  }
  if (!absl::GetFlag(FLAGS_device).empty()) {
    auto device = ftd::client::ParseDeviceRequest(absl::GetFlag(FLAGS_device));
    if (!device.ok()) return device.status();
    *spec.mutable_device() = *device;
  }
  if (auto v = absl::GetFlag(FLAGS_devices)) spec.set_devices(*v);
  if (auto v = absl::GetFlag(FLAGS_efficiency)) spec.mutable_efficiency()->set_enabled(*v);
  if (auto v = absl::GetFlag(FLAGS_efficiency_max_step_ratio)) {
    spec.mutable_efficiency()->set_max_step_ratio(*v);
  }
  if (auto v = absl::GetFlag(FLAGS_priority)) spec.set_priority(*v);
  if (!absl::GetFlag(FLAGS_name).empty()) spec.set_display_name(absl::GetFlag(FLAGS_name));
  absl::Status labels = ftd::client::ParseLabels(absl::GetFlag(FLAGS_labels), &spec);
  if (!labels.ok()) return labels;
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("the client of ftd; ftctl --help lists its commands");
  if (std::optional<int> code = HelpVersionAndChecks(argc, argv)) return *code;
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin(), positional.end());
  if (args.size() < 2) return UsageError("no command given");
  const std::string& command = args[1];

  std::string address = absl::GetFlag(FLAGS_address);
  if (address.empty()) {
    const char* env = std::getenv("FTD_ADDRESS");
    address = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  }
  auto flag_or_env = [](const std::string& flag, const char* env) {
    if (!flag.empty()) return flag;
    const char* value = std::getenv(env);
    return std::string(value != nullptr ? value : "");
  };
  ftd::client::ConnectionOptions connection;
  connection.address = address;
  connection.tls = absl::GetFlag(FLAGS_tls) || flag_or_env("", "FTD_TLS") == "1";
  connection.ca_file = flag_or_env(absl::GetFlag(FLAGS_tls_ca), "FTD_TLS_CA");
  connection.cert_file = flag_or_env(absl::GetFlag(FLAGS_tls_cert), "FTD_TLS_CERT");
  connection.key_file = flag_or_env(absl::GetFlag(FLAGS_tls_key), "FTD_TLS_KEY");
  connection.server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> connected = ftd::client::Connect(connection);
  if (!connected.ok()) return UsageError(std::string(connected.status().message()));
  std::shared_ptr<grpc::Channel> channel = *std::move(connected);
  auto stub = ftd::v1::FineTuning::NewStub(channel);
  ftd::client::Ftctl::Options options;
  options.out = &std::cout;
  options.err = &std::cerr;
  options.json = absl::GetFlag(FLAGS_json);
  options.live = !options.json && isatty(STDOUT_FILENO);
  options.timeout = std::chrono::seconds(std::max(1, absl::GetFlag(FLAGS_timeout)));
  if (const std::string token_file = absl::GetFlag(FLAGS_token_file); !token_file.empty()) {
    absl::StatusOr<std::string> token = ftd::ReadFile(token_file);
    if (!token.ok()) {
      return UsageError(absl::StrCat("--token_file: cannot read \"", token_file,
                                     "\": ", token.status().message()));
    }
    options.token = std::string(absl::StripAsciiWhitespace(*token));
    if (options.token.empty()) {
      return UsageError(absl::StrCat("--token_file: \"", token_file, "\" is empty"));
    }
  } else if (const char* env = std::getenv("FTD_TOKEN"); env != nullptr) {
    options.token = std::string(absl::StripAsciiWhitespace(env));
  }
  // A token is a password: not sent in the clear off this machine.
  if (!options.token.empty() && !connection.tls && connection.ca_file.empty() &&
      connection.cert_file.empty() && !ftd::IsLoopbackAddress(address)) {
    return UsageError(absl::StrCat("a token is not sent to ", address,
                                   " without TLS; connect with --tls or --tls_ca"));
  }
  ftd::client::Ftctl ftctl(stub.get(), options);

  auto job_id = [&]() -> std::string { return args.size() > 2 ? args[2] : ""; };
  auto needs_job = [&](const std::string& cmd) {
    return UsageError(cmd + " needs a job id: ftctl " + cmd + " JOB_ID");
  };

  if (command == "submit") {
    LocalInputs local;
    absl::StatusOr<ftd::v1::JobSpec> spec = SpecFromFlags(args, &local);
    if (!spec.ok()) return UsageError(std::string(spec.status().message()));
    // Local files go up first; the same bytes are stored once however often.
    auto upload = [&](const std::string& path, ftd::v1::DatasetFormat format, std::string* id) {
      if (path.empty()) return true;
      absl::StatusOr<std::string> uploaded = ftctl.UploadForSpec(path, format);
      if (!uploaded.ok()) {
        std::cerr << "ftctl: " << absl::StatusCodeToString(uploaded.status().code()) << ": "
                  << uploaded.status().message() << "\n";
        return false;
      }
      *id = *std::move(uploaded);
      return true;
    };
    // (SpecFromFlags made the datasets a local path fills.)
    if (!upload(local.model, ftd::v1::DATASET_FORMAT_UNSPECIFIED,
                spec->mutable_base_model_file_id()) ||
        (!local.train.empty() && !upload(local.train, spec->train_dataset().format(),
                                         spec->mutable_train_dataset()->mutable_file_id())) ||
        (!local.validation.empty() &&
         !upload(local.validation, spec->validation_dataset().format(),
                 spec->mutable_validation_dataset()->mutable_file_id()))) {
      return ftd::client::kExitError;
    }
    ftd::v1::SubmitJobRequest request;
    *request.mutable_spec() = *std::move(spec);
    request.set_request_id(absl::GetFlag(FLAGS_request_id));
    return ftctl.Submit(request, absl::GetFlag(FLAGS_watch));
  }
  if (command == "upload") {
    if (args.size() < 3) return UsageError("upload needs a path: ftctl upload FILE|DIR");
    ftd::v1::DatasetFormat format = ftd::v1::DATASET_FORMAT_UNSPECIFIED;
    if (const std::string f = absl::GetFlag(FLAGS_format); !f.empty()) {
      if (f != "csv" && f != "jsonl") return UsageError("--format: must be csv or jsonl");
      format = f == "csv" ? ftd::v1::DATASET_FORMAT_CSV : ftd::v1::DATASET_FORMAT_JSONL;
    }
    return ftctl.Upload(args[2], format, absl::GetFlag(FLAGS_name));
  }
  if (command == "files") {
    if (args.size() > 2 && args[2] == "delete") {
      if (args.size() < 4)
        return UsageError("files delete needs a file id: ftctl files delete FILE_ID");
      return ftctl.DeleteFile(args[3]);
    }
    ftd::v1::FileKind kind = ftd::v1::FILE_KIND_UNSPECIFIED;
    if (const std::string k = absl::GetFlag(FLAGS_kind); !k.empty()) {
      if (k != "dataset" && k != "model") return UsageError("--kind: must be dataset or model");
      kind = k == "model" ? ftd::v1::FILE_KIND_MODEL : ftd::v1::FILE_KIND_DATASET;
    }
    return ftctl.Files(args.size() > 2 ? args[2] : "", kind);
  }
  if (command == "download") {
    if (args.size() < 4)
      return UsageError("download needs a job id and a folder: ftctl download JOB_ID DIR");
    return ftctl.Download(args[2], args[3], absl::GetFlag(FLAGS_artifact));
  }
  if (command == "get") return job_id().empty() ? needs_job(command) : ftctl.Get(job_id());
  if (command == "cancel") return job_id().empty() ? needs_job(command) : ftctl.Cancel(job_id());
  if (command == "delete") return job_id().empty() ? needs_job(command) : ftctl.Delete(job_id());
  if (command == "watch") return job_id().empty() ? needs_job(command) : ftctl.Watch(job_id());
  if (command == "events") {
    if (job_id().empty()) return needs_job(command);
    return ftctl.Events(job_id(), absl::GetFlag(FLAGS_page_size), absl::GetFlag(FLAGS_page_token));
  }
  if (command == "list") {
    ftd::v1::ListJobsRequest request;
    request.set_page_size(absl::GetFlag(FLAGS_page_size));
    request.set_page_token(absl::GetFlag(FLAGS_page_token));
    request.set_order_by(absl::GetFlag(FLAGS_order_by));
    for (const std::string& s : absl::GetFlag(FLAGS_state)) {
      auto state = ftd::client::ParseJobState(s);
      if (!state.ok()) return UsageError(std::string(state.status().message()));
      request.add_states(*state);
    }
    ftd::v1::JobSpec labels;
    absl::Status parsed = ftd::client::ParseLabels(absl::GetFlag(FLAGS_labels), &labels);
    if (!parsed.ok()) return UsageError(std::string(parsed.message()));
    request.mutable_labels()->insert(labels.labels().begin(), labels.labels().end());
    return ftctl.List(request, absl::GetFlag(FLAGS_all));
  }
  if (command == "info") return ftctl.Info();
  if (command == "health") return Health(channel, job_id(), options.timeout);
  if (command == "cache") {
    if (args.size() > 2 && args[2] == "clear") {
      if (args.size() < 4)
        return UsageError("cache clear needs a job id: ftctl cache clear JOB_ID");
      return ftctl.ClearCache(args[3]);
    }
    return ftctl.Cache(job_id());
  }
  return UsageError("unknown command \"" + command + "\"");
}
