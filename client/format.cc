#include "client/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/enum_names.h"
#include "common/time_util.h"
#include "google/protobuf/util/json_util.h"

namespace ftd::client {
namespace {

std::string FormatTime(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  absl::Time t = FromTimestamp(ts);
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", t, absl::LocalTimeZone());
}

std::string ProgressCell(const v1::Job& job) {
  if (job.state() == v1::JOB_STATE_QUEUED) return absl::StrCat("queued #", job.queue_position());
  const v1::Progress& p = job.progress();
  if (p.total_steps() <= 0) return "-";
  return absl::StrFormat("%d%% (epoch %d/%d)", static_cast<int>(100.0 * p.step() / p.total_steps()),
                         p.epoch(), p.total_epochs());
}

std::string PolicyName(const v1::FreezePolicy& policy) {
  switch (policy.policy_case()) {
    case v1::FreezePolicy::kStatic:
      return absl::StrCat("static (", policy.static_().frozen_layers(), " layers)");
    case v1::FreezePolicy::kAutofreeze: {
      const auto& af = policy.autofreeze();
      std::string extra;
      if (af.freeze_through_first_above()) absl::StrAppend(&extra, ", through the first above");
      if (af.max_layers_per_decision() > 0)
        absl::StrAppend(&extra, ", at most ", af.max_layers_per_decision(), " a decision");
      if (af.smoothing() > 0) absl::StrAppend(&extra, ", smoothing ", af.smoothing());
      if (af.keep_trainable() > 1)
        absl::StrAppend(&extra, ", the last ", af.keep_trainable(), " layers keep training");
      if (af.start_fraction() > 0)
        absl::StrAppend(&extra, ", no freezing before ", af.start_fraction(), " of training");
      return absl::StrCat("autofreeze (percentile ", af.percentile(), ", ",
                          af.evaluations_per_epoch(), " evaluations/epoch", extra, ")");
    }
    case v1::FreezePolicy::kGeometric:
      return absl::StrCat("geometric (alpha ", policy.geometric().alpha(), ")");
    case v1::FreezePolicy::kLinear:
      return absl::StrCat("linear (from ", policy.linear().freeze_start(), " of training to ",
                          policy.linear().freeze_level(), " of the layers)");
    default:
      return "none";
  }
}

std::string DeviceRequestName(const v1::DeviceRequest& request) {
  switch (request.kind()) {
    case v1::DeviceRequest::KIND_CPU:
      return "cpu";
    case v1::DeviceRequest::KIND_CUDA:
      return absl::StrCat("cuda:", request.cuda_index());
    default:
      return "any";
  }
}

}  // namespace

std::string StateName(v1::JobState state) { return ShortName(state); }

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string FormatProgress(const v1::Progress& p) {
  std::string line = absl::StrFormat("step %d/%d", p.step(), p.total_steps());
  if (p.total_steps() > 0) {
    absl::StrAppendFormat(&line, " (%d%%)", static_cast<int>(100.0 * p.step() / p.total_steps()));
  }
  absl::StrAppendFormat(&line, " epoch %d/%d loss %.4f %.1f samples/s ETA %s", p.epoch(),
                        p.total_epochs(), p.loss(), p.samples_per_second(),
                        FormatDuration(p.eta_seconds()));
  return line;
}

std::string FormatJobTable(const std::vector<v1::Job>& jobs) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "STATE", "PRIORITY", "PROGRESS", "DEVICE", "CREATED"}};
  for (const v1::Job& job : jobs) {
    rows.push_back({job.id(), job.spec().display_name().empty() ? "-" : job.spec().display_name(),
                    StateName(job.state()), absl::StrCat(job.spec().priority()), ProgressCell(job),
                    job.device().empty() ? "-" : job.device(), FormatTime(job.create_time())});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatJob(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  std::string out;
  absl::StrAppend(&out, "id:          ", job.id(), "\n");
  if (!spec.display_name().empty())
    absl::StrAppend(&out, "name:        ", spec.display_name(), "\n");
  absl::StrAppend(&out, "state:       ", StateName(job.state()));
  if (job.state() == v1::JOB_STATE_QUEUED)
    absl::StrAppend(&out, " (position ", job.queue_position(), ")");
  absl::StrAppend(&out, "\n");
  if (!job.error().empty()) absl::StrAppend(&out, "error:       ", job.error(), "\n");
  absl::StrAppend(&out, "model:       ", spec.base_model(), "\n");
  absl::StrAppend(&out, "train:       ", spec.train_dataset().path(), "\n");
  if (spec.has_validation_dataset()) {
    absl::StrAppend(&out, "validation:  ", spec.validation_dataset().path(), "\n");
  }
  const v1::Hyperparameters& hp = spec.hyperparameters();
  absl::StrAppendFormat(&out,
                        "training:    %d epochs, batch %d, lr %g, warm-up %g, weight decay %g, "
                        "max length %d, seed %d\n",
                        hp.epochs(), hp.batch_size(), hp.learning_rate(), hp.warmup_ratio(),
                        hp.weight_decay(), hp.max_seq_length(), hp.seed());
  absl::StrAppend(&out, "precision:   ",
                  hp.precision() == v1::PRECISION_BF16   ? "bf16"
                  : hp.precision() == v1::PRECISION_AUTO ? "auto"
                  : hp.bf16()                            ? "bf16 on a GPU, else fp32"
                                                         : "fp32");
  if (job.result().precision() != v1::PRECISION_UNSPECIFIED) {
    absl::StrAppend(&out, " (ran in ",
                    job.result().precision() == v1::PRECISION_BF16 ? "bf16" : "fp32", ")");
  }
  absl::StrAppend(&out, "\n");
  absl::StrAppend(&out, "freezing:    ", PolicyName(spec.freeze_policy()), "\n");
  if (job.freeze().total_layers() > 0) {
    absl::StrAppendFormat(&out, "frozen:      %d of %d layers, %.1f%% of parameters trained\n",
                          job.freeze().frozen_layers(), job.freeze().total_layers(),
                          100 * job.freeze().trainable_parameter_fraction());
  }
  absl::StrAppend(&out, "cache:       ",
                  !spec.activation_cache().enabled() ? "off"
                  : spec.activation_cache().dtype() == v1::ActivationCache::DTYPE_FP32
                      ? "on (fp32)"
                      : "on (bf16)");
  if (job.cache().enabled()) {
    int64_t bytes = 0;
    for (const v1::CacheSegment& s : job.cache().segments()) bytes += s.bytes();
    absl::StrAppend(&out, ", ", FormatBytes(bytes), " in ", job.cache().segments_size(),
                    " segment(s)");
    if (!job.cache().disabled_reason().empty()) {
      absl::StrAppend(&out, "; turned off: ", job.cache().disabled_reason());
    }
  }
  absl::StrAppend(&out, "\n");
  for (const v1::CacheStats& e : job.cache().epochs()) {
    absl::StrAppend(&out, "cache:       ", FormatCacheStats(e), "\n");
  }
  const std::string placed =
      job.devices_size() > 1 ? absl::StrJoin(job.devices(), ", ") : job.device();
  absl::StrAppend(&out, "device:      ", DeviceRequestName(spec.device()),
                  spec.devices() > 1 ? absl::StrCat(" x ", spec.devices()) : "",
                  placed.empty() ? "" : absl::StrCat(" (on ", placed, ")"), "\n");
  if (spec.efficiency().enabled()) {
    absl::StrAppend(&out, "efficiency:  on (a step on fewer devices within ",
                    spec.efficiency().max_step_ratio(), "x its first",
                    job.running_devices() > 0
                        ? absl::StrCat("; moved to ", job.running_devices(),
                                       job.running_devices() == 1 ? " device" : " devices")
                        : "",
                    ")\n");
  }
  absl::StrAppend(&out, "priority:    ", spec.priority(), "\n");
  if (!spec.labels().empty()) {
    std::vector<std::string> labels;
    for (const auto& [k, v] : spec.labels()) labels.push_back(absl::StrCat(k, "=", v));
    std::sort(labels.begin(), labels.end());
    absl::StrAppend(&out, "labels:      ", absl::StrJoin(labels, ", "), "\n");
  }
  if (job.progress().total_steps() > 0) {
    absl::StrAppend(&out, "progress:    ", FormatProgress(job.progress()), "\n");
  }
  absl::StrAppend(&out, "created:     ", FormatTime(job.create_time()), "\n");
  if (job.has_start_time())
    absl::StrAppend(&out, "started:     ", FormatTime(job.start_time()), "\n");
  if (job.has_end_time()) absl::StrAppend(&out, "ended:       ", FormatTime(job.end_time()), "\n");
  if (job.attempts() > 1) absl::StrAppend(&out, "attempts:    ", job.attempts(), "\n");
  for (const v1::Checkpoint& c : job.checkpoints()) {
    absl::StrAppend(&out, "checkpoint:  ", FormatCheckpoint(c), "\n");
  }
  if (!job.result().output_dir().empty()) {
    absl::StrAppend(&out, "output:      ", job.result().output_dir(), "\n");
  }
  if (job.result().exported_step() > 0) {
    const v1::JobResult& r = job.result();
    absl::StrAppend(&out, "exported:    ",
                    r.exported_weights() == v1::EXPORT_WEIGHTS_BEST ? "the best" : "the final",
                    " weights, of step ", r.exported_step());
    if (r.has_exported_evaluation()) {
      absl::StrAppendFormat(&out, " (validation accuracy %.4f)", r.exported_evaluation().accuracy());
    }
    absl::StrAppend(&out, "\n");
  } else if (spec.export_weights() != v1::EXPORT_WEIGHTS_UNSPECIFIED) {
    absl::StrAppend(&out, "export:      ",
                    spec.export_weights() == v1::EXPORT_WEIGHTS_BEST ? "best" : "final", "\n");
  }
  for (const v1::FreezeDecision& f : job.result().freeze_timeline()) {
    if (f.frozen_after() == f.frozen_before() && f.step() > 0) continue;
    if (f.baseline()) continue;
    absl::StrAppendFormat(&out, "freeze:      step %d (epoch %d): %d -> %d layers frozen\n",
                          f.step(), f.epoch(), f.frozen_before(), f.frozen_after());
  }
  if (job.result().evaluations_dropped() > 0) {
    absl::StrAppend(&out, "eval:        (", job.result().evaluations_dropped(),
                    " older evaluations: ftctl events ", job.id(), ")\n");
  }
  for (const v1::Evaluation& e : job.result().evaluations()) {
    absl::StrAppendFormat(&out, "eval:        epoch %d: loss %.4f accuracy %.4f macro-F1 %.4f\n",
                          e.epoch(), e.loss(), e.accuracy(), e.macro_f1());
  }
  return out;
}

std::string FormatEvent(const v1::JobEvent& event) {
  std::string line = absl::StrCat(FormatTime(event.time()), "  #", event.sequence(), "  ");
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange: {
      const auto& c = event.state_change();
      if (c.from_state() == v1::JOB_STATE_UNSPECIFIED) {
        absl::StrAppend(&line, StateName(c.to_state()));
      } else {
        absl::StrAppend(&line, StateName(c.from_state()), " -> ", StateName(c.to_state()));
      }
      if (!c.reason().empty()) absl::StrAppend(&line, ": ", c.reason());
      break;
    }
    case v1::JobEvent::kProgress:
      absl::StrAppend(&line, FormatProgress(event.progress()));
      break;
    case v1::JobEvent::kEvaluation: {
      const auto& e = event.evaluation();
      absl::StrAppendFormat(&line, "evaluation epoch %d", e.epoch());
      if (e.step() > 0) absl::StrAppendFormat(&line, " step %d", e.step());
      absl::StrAppendFormat(&line, ": loss %.4f accuracy %.4f macro-F1 %.4f", e.loss(),
                            e.accuracy(), e.macro_f1());
      break;
    }
    case v1::JobEvent::kFreezeDecision: {
      const auto& f = event.freeze_decision();
      if (f.baseline()) {
        absl::StrAppendFormat(&line, "autofreeze at step %d (epoch %d): gradient baseline recorded",
                              f.step(), f.epoch());
        break;
      }
      absl::StrAppendFormat(
          &line,
          "%s at step %d (epoch %d): %d -> %d of %d layers frozen, %.1f%% of parameters train",
          f.frozen_after() > f.frozen_before() ? "FREEZE" : "autofreeze", f.step(), f.epoch(),
          f.frozen_before(), f.frozen_after(), f.total_layers(),
          100 * f.trainable_parameter_fraction());
      if (!f.layer_change_rates().empty()) {
        std::vector<std::string> rates;
        for (double r : f.layer_change_rates()) rates.push_back(absl::StrFormat("%.3f", r));
        absl::StrAppendFormat(&line, "; threshold %.3f, change rates [%s]", f.threshold(),
                              absl::StrJoin(rates, " "));
      }
      break;
    }
    case v1::JobEvent::kCache:
      if (!event.cache().disabled_reason().empty()) {
        absl::StrAppend(&line, "cache off: ", event.cache().disabled_reason());
      } else if (event.cache().epoch().epoch() == 0) {
        int64_t bytes = 0;
        for (const auto& s : event.cache().segments()) bytes += s.bytes();
        absl::StrAppend(&line, "cache: ", event.cache().segments_size(), " segment(s), ",
                        FormatBytes(bytes), " (training and validation rows)");
      } else {
        absl::StrAppend(&line, "cache ", FormatCacheStats(event.cache().epoch()));
      }
      break;
    case v1::JobEvent::kArtifact:
      absl::StrAppend(&line, "wrote ", event.artifact().kind(), ": ", event.artifact().path());
      break;
    case v1::JobEvent::kCheckpoint:
      absl::StrAppend(&line, "checkpoint: ", FormatCheckpoint(event.checkpoint()));
      break;
    case v1::JobEvent::kResume: {
      const v1::Resume& r = event.resume();
      absl::StrAppendFormat(&line,
                            "resumed from step %d (epoch %d), lost %d steps (%.1f s) of work",
                            r.step(), r.epoch(), r.lost_steps(), r.lost_seconds());
      for (const std::string& why : r.skipped()) absl::StrAppend(&line, "; skipped ", why);
      break;
    }
    case v1::JobEvent::kLog:
      absl::StrAppend(&line,
                      event.log().level() == v1::JobEvent::Log::LEVEL_ERROR     ? "error: "
                      : event.log().level() == v1::JobEvent::Log::LEVEL_WARNING ? "warning: "
                                                                                : "",
                      event.log().message());
      break;
    default:
      absl::StrAppend(&line, "(unknown event)");
  }
  return line;
}

std::string FormatServerInfo(const v1::ServerInfo& info) {
  std::string out =
      absl::StrCat("version:     ", info.version(), "\n", "queue:       ", info.queue_length(),
                   " queued, ", info.running_jobs(), " running\n", "metrics:     ",
                   !info.metrics_url().empty() ? info.metrics_url()
                   : info.metrics_address().empty()
                       ? std::string("off")
                       : absl::StrCat("http://", info.metrics_address(), "/metrics"),
                   "\n");
  if (info.has_kernels()) {
    const v1::ServerInfo::Kernels& k = info.kernels();
    absl::StrAppend(
        &out, "kernels:     ",
        k.blas_core().empty() ? std::string("a BLAS that is not OpenBLAS")
                              : absl::StrCat("OpenBLAS ", k.blas_core()),
        k.best_blas_core().empty() || k.best_blas_core() == k.blas_core()
            ? std::string()
            : absl::StrCat(" (made for this CPU: ", k.best_blas_core(), ")"),
        "; ", k.cpu().empty() ? std::string("CPU") : k.cpu(), " (",
        k.cpu_features().empty() ? std::string("no vector units above SSE")
                                 : absl::StrJoin(k.cpu_features(), " "),
        ")\n");
  }
  out += "devices:\n";
  if (info.devices().empty()) out += "  (none: jobs wait in the queue)\n";
  for (const v1::Device& d : info.devices()) {
    absl::StrAppend(&out, "  ", d.name(), "  ", d.job_id().empty() ? "idle" : d.job_id(), "  ",
                    d.description(), "\n");
  }
  if (!info.workers().empty()) {
    out += "workers:\n";
    for (const v1::Worker& w : info.workers()) {
      absl::StrAppend(&out, "  ", w.name(), "  collectives on ", w.collective_host(),
                      "  attached ", FormatTime(w.attach_time()), "  ",
                      absl::StrJoin(w.devices(), ", "), "\n");
    }
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (int64_t{1} << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  if (bytes < (int64_t{1} << 30)) return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
}

std::string FormatCheckpoint(const v1::Checkpoint& c) {
  std::string out = absl::StrFormat("step %d (epoch %d), %s, %s", c.step(), c.epoch(),
                                    FormatBytes(c.bytes()), FormatTime(c.time()));
  if (!c.reason().empty()) absl::StrAppend(&out, " (", c.reason(), ")");
  return out;
}

std::string FormatCacheStats(const v1::CacheStats& s) {
  const int64_t served = s.hits() + s.partial_hits();
  std::string out = s.epoch() > 0 ? absl::StrCat("epoch ", s.epoch(), ": ") : "all epochs: ";
  absl::StrAppendFormat(
      &out,
      "%d of %d examples from the cache (%.1f%%; %d at the frozen depth, %d from shallower "
      "entries), %d computed; wrote %d (%s), read %s; waited %.2f s; %d layers frozen at the end",
      served, s.examples(), s.examples() > 0 ? 100.0 * served / s.examples() : 0.0, s.hits(),
      s.partial_hits(), s.misses(), s.entries_written(), FormatBytes(s.bytes_written()),
      FormatBytes(s.bytes_read()), s.read_wait_seconds(), s.frozen_layers());
  if (s.corrupt() > 0) absl::StrAppend(&out, "; ", s.corrupt(), " corrupt entries recomputed");
  if (s.errors() > 0) absl::StrAppend(&out, "; ", s.errors(), " storage errors");
  return out;
}

namespace {

std::string SegmentLine(const v1::CacheSegment& s) {
  return absl::StrFormat(
      "  %s/%s/%d  %d entries  %s  %s  last used %s%s\n", s.namespace_().substr(0, 16),
      s.dataset_fingerprint().substr(0, 12), s.layer(), s.entries(), FormatBytes(s.bytes()),
      s.dtype() == v1::ActivationCache::DTYPE_FP32 ? "fp32" : "bf16",
      FormatTime(s.last_used_time()),
      s.in_use_by().empty() ? "" : absl::StrCat("  in use by ", absl::StrJoin(s.in_use_by(), ",")));
}

}  // namespace

std::string FormatCacheInfo(const v1::CacheInfo& info, bool job) {
  std::string out;
  if (job) {
    const v1::CacheUsage& usage = info.job();
    if (!usage.enabled()) {
      out += "this job has not used the activation cache\n";
    } else {
      absl::StrAppend(&out, "job:         ", FormatCacheStats(usage.totals()), "\n");
      for (const v1::CacheStats& e : usage.epochs()) {
        absl::StrAppend(&out, "             ", FormatCacheStats(e), "\n");
      }
      if (!usage.disabled_reason().empty()) {
        absl::StrAppend(&out, "turned off:  ", usage.disabled_reason(), "\n");
      }
    }
  }
  absl::StrAppend(&out, "cache:       ", FormatBytes(info.bytes()), " of ",
                  FormatBytes(info.capacity_bytes()), "\n");
  absl::StrAppend(&out, job ? "segments of this job" : "segments",
                  " (namespace/dataset/layer):", info.segments().empty() ? " none\n" : "\n");
  for (const v1::CacheSegment& s : info.segments()) out += SegmentLine(s);
  return out;
}

std::string FormatClearedCache(const v1::ClearJobCacheResponse& response) {
  std::string out = absl::StrCat("cleared ", response.cleared_size(), " segment(s), ",
                                 FormatBytes(response.bytes_freed()), "\n");
  for (const v1::CacheSegment& s : response.cleared()) out += SegmentLine(s);
  if (!response.kept().empty()) {
    absl::StrAppend(&out, "kept ", response.kept_size(), " segment(s) a running job uses:\n");
    for (const v1::CacheSegment& s : response.kept()) out += SegmentLine(s);
  }
  return out;
}

std::string ToJson(const google::protobuf::Message& message, bool multiline) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = multiline;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!multiline) {
    out.erase(std::remove(out.begin(), out.end(), '\n'), out.end());
  }
  return out;
}

std::string FormatFile(const v1::File& file, bool detail) {
  std::string out =
      absl::StrCat(file.id(), "  ", file.kind() == v1::FILE_KIND_MODEL ? "model" : "dataset", "  ",
                   file.display_name(), "  ", FormatBytes(file.bytes()));
  if (file.has_dataset()) {
    absl::StrAppend(&out, "  ", ShortName(file.dataset().format()), ", ", file.dataset().rows(),
                    " rows, columns ", absl::StrJoin(file.dataset().columns(), ","));
  } else if (file.has_model()) {
    absl::StrAppend(&out, "  ", file.model().model_type(), ", ", file.model().layers(),
                    " layers, hidden ", file.model().hidden_size(), ", ", file.model().parameters(),
                    " parameters");
  }
  if (!file.in_use_by().empty()) {
    absl::StrAppend(&out, "  in use by ", absl::StrJoin(file.in_use_by(), ","));
  }
  absl::StrAppend(&out, "\n");
  if (detail) {
    absl::StrAppend(&out, "  sha256 ", file.sha256(), "\n");
    for (const v1::FileEntry& e : file.entries()) {
      absl::StrAppend(&out, "  ", e.name(), "  ", FormatBytes(e.size()), "  ", e.sha256(), "\n");
    }
  }
  return out;
}

std::string FormatFileTable(const v1::ListFilesResponse& response) {
  std::string out;
  for (const v1::File& file : response.files()) absl::StrAppend(&out, FormatFile(file, false));
  if (response.files().empty()) absl::StrAppend(&out, "no files\n");
  absl::StrAppend(&out, "stored ", FormatBytes(response.stored_bytes()));
  if (response.capacity_bytes() > 0) {
    absl::StrAppend(&out, " of ", FormatBytes(response.capacity_bytes()));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace ftd::client
