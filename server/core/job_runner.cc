#include "server/core/job_runner.h"

#include <exception>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"

namespace ftd::core {

// The trainer's view of its job; its reports go to the recorder.
class JobRunner::Context final : public training::TrainingContext {
 public:
  Context(RunRecorder& recorder, JobObserver& observer, std::string job_id, std::string tenant,
          v1::JobSpec spec, std::vector<std::string> devices, std::string output_dir,
          const scheduler::StopToken& stop)
      : recorder_(recorder),
        observer_(observer),
        job_id_(std::move(job_id)),
        tenant_(std::move(tenant)),
        spec_(std::move(spec)),
        devices_(std::move(devices)),
        output_dir_(std::move(output_dir)),
        stop_(stop) {}

  const std::string& job_id() const override { return job_id_; }
  const std::string& tenant() const override { return tenant_; }
  const v1::JobSpec& spec() const override { return spec_; }
  const std::vector<std::string>& devices() const override { return devices_; }
  const std::string& output_dir() const override { return output_dir_; }
  bool StopRequested() const override { return stop_.stop_requested(); }
  std::string StopForLater() const override {
    switch (stop_.reason()) {
      case scheduler::StopReason::kShutdown:
        return "shutdown";
      case scheduler::StopReason::kPreempted:
        return "preemption";
      default:
        return "";
    }
  }
  std::string checkpoint_dir() const override { return recorder_.CheckpointDir(job_id_); }
  void Resumed(const v1::Resume& resume, const v1::JobResult& history,
               const v1::CacheUsage& cache) override {
    recorder_.Resumed(job_id_, resume, history, cache);
  }
  void ReportProgress(const v1::Progress& progress) override {
    recorder_.ReportProgress(job_id_, progress);
  }
  void Emit(v1::JobEvent event) override { recorder_.Emit(job_id_, std::move(event)); }
  void RecordFingerprint(const std::string& role, const std::string& sha256) override {
    recorder_.RecordFingerprint(job_id_, role, sha256);
  }
  void RecordStep(const training::StepStats& stats) override { observer_.Step(job_id_, stats); }
  bool ContinueOn(int devices) override { return recorder_.ContinueOn(job_id_, devices); }

 private:
  RunRecorder& recorder_;
  JobObserver& observer_;
  const std::string job_id_;
  const std::string tenant_;
  const v1::JobSpec spec_;
  const std::vector<std::string> devices_;
  const std::string output_dir_;
  const scheduler::StopToken& stop_;
};

void JobRunner::Run(const std::string& job_id, const std::vector<scheduler::Device>& devices,
                    const scheduler::StopToken& stop) {
  std::vector<std::string> names;
  for (const scheduler::Device& d : devices) names.push_back(d.name());
  std::optional<RunRecorder::Started> started = recorder_.StartRun(job_id, names);
  if (!started.has_value()) return;
  JobObserver& observer = *options_.observer;
  observer.QueueWait(options_.now() - started->create_time);
  // The job's metrics carry its first device's name.
  observer.JobStarted(job_id, ModelName(started->spec.base_model()), names.front());
  for (const std::string& name : names) observer.DeviceBusy(name, true);

  const std::string output_dir = (std::filesystem::path(options_.jobs_dir) / job_id).string();
  absl::StatusOr<v1::JobResult> result;
  std::error_code ec;
  std::filesystem::create_directories(output_dir, ec);
  // The folder's own entry is synced before anything in it is relied on.
  absl::Status synced =
      ec ? absl::OkStatus() : SyncPath(options_.jobs_dir.empty() ? "." : options_.jobs_dir);
  if (ec) {
    result = absl::UnavailableError(
        absl::StrCat("cannot create the job's output folder \"", output_dir, "\": ", ec.message()));
  } else if (!synced.ok()) {
    result = synced;
  } else if (absl::Status unchanged = PathsUnchanged(started->spec); !unchanged.ok()) {
    result = unchanged;
  } else {
    Context context(recorder_, observer, job_id, started->tenant, std::move(started->spec), names,
                    output_dir, stop);
    result = RunGuarded(*options_.trainer, context);
  }

  observer.JobStopped(job_id);
  for (const std::string& name : names) observer.DeviceBusy(name, false);
  recorder_.EndRun(job_id, result, stop);
}

std::string ModelName(const std::string& base_model) {
  std::filesystem::path path = std::filesystem::path(base_model).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  std::string name = path.filename().string();
  if (name == "model" && path.has_parent_path()) {
    name = (path.parent_path().filename() / name).string();
  }
  return name;
}

absl::Status PathsUnchanged(const v1::JobSpec& spec) {
  // (Uploads live in the daemon's own folder, which no user writes.)
  for (const auto& [field, path] :
       {std::pair<std::string, std::string>{
            "base_model", spec.base_model_file_id().empty() ? spec.base_model() : ""},
        {"train_dataset.path",
         spec.train_dataset().file_id().empty() ? spec.train_dataset().path() : ""},
        {"validation_dataset.path",
         spec.validation_dataset().file_id().empty() ? spec.validation_dataset().path() : ""}}) {
    if (path.empty()) continue;
    absl::StatusOr<std::string> canonical = CanonicalPath(path);
    if (!canonical.ok() || *canonical != path) {
      return absl::FailedPreconditionError(absl::StrCat(
          field, ": \"", path,
          "\" is not where it was when the job was submitted (a folder on its path was moved, "
          "deleted or replaced by a symbolic link)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobResult> RunGuarded(training::Trainer& trainer,
                                         training::TrainingContext& context) {
  try {
    return trainer.Train(context);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training stopped on an exception: ", e.what()));
  } catch (...) {
    return absl::InternalError("training stopped on an unknown exception");
  }
}

RunOutcome ClassifyRun(const absl::Status& result, bool cancelling, scheduler::StopReason reason,
                       int continue_on) {
  if (result.ok()) return RunOutcome::kSucceeded;
  if (cancelling || reason == scheduler::StopReason::kCancelled) return RunOutcome::kCancelled;
  if (training::IsDeviceLost(result)) return RunOutcome::kRequeuedDeviceLost;
  if (absl::IsCancelled(result) && reason == scheduler::StopReason::kShutdown) {
    return RunOutcome::kRequeuedForShutdown;
  }
  if (absl::IsCancelled(result) && reason == scheduler::StopReason::kPreempted) {
    return RunOutcome::kRequeuedPreempted;
  }
  if (absl::IsCancelled(result) && reason == scheduler::StopReason::kNone && continue_on > 0) {
    return RunOutcome::kRequeuedFewerDevices;
  }
  return RunOutcome::kFailed;
}

}  // namespace ftd::core
