// A TrainingContext that records what the trainer reports, for engine tests.
// Header-only.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ftd/v1/ftd.pb.h"
#include "server/training/trainer.h"

namespace ftd::testing {

// The trainer's view of a job, recorded for the test.
class FakeTrainingContext final : public training::TrainingContext {
 public:
  FakeTrainingContext(v1::JobSpec spec, std::string output_dir,
                      std::vector<std::string> devices = {"cpu:0"})
      : spec_(std::move(spec)), devices_(std::move(devices)), output_dir_(std::move(output_dir)) {}
  const std::string& job_id() const override { return id_; }
  const v1::JobSpec& spec() const override { return spec_; }
  const std::vector<std::string>& devices() const override { return devices_; }
  const std::string& output_dir() const override { return output_dir_; }
  bool StopRequested() const override {
    return stop_after_ >= 0 && progress_.size() >= static_cast<size_t>(stop_after_);
  }
  std::string StopForLater() const override { return stop_for_later_ ? "shutdown" : ""; }
  std::string checkpoint_dir() const override { return checkpoint_dir_; }
  void Resumed(const v1::Resume& resume, const v1::JobResult& history,
               const v1::CacheUsage& cache) override {
    resumed_.push_back(resume);
    history_ = history;
    (void)cache;
  }
  void ReportProgress(const v1::Progress& progress) override { progress_.push_back(progress); }
  void Emit(v1::JobEvent event) override { events_.push_back(std::move(event)); }
  void RecordFingerprint(const std::string& role, const std::string& sha) override {
    fingerprints_[role] = sha;
  }
  void RecordStep(const training::StepStats& stats) override { steps_.push_back(stats); }
  bool ContinueOn(int devices) override {
    if (!accept_continue_on_) return false;
    continue_on_ = devices;
    return true;
  }

  std::vector<v1::Evaluation> evaluations() const {
    std::vector<v1::Evaluation> out;
    for (const auto& e : events_) {
      if (e.has_evaluation()) out.push_back(e.evaluation());
    }
    return out;
  }
  // The activation cache's totals at the last epoch's report (all zeros
  // without one).
  v1::CacheStats CacheTotals() const {
    v1::CacheStats last;
    for (const auto& e : events_) {
      if (e.has_cache() && e.cache().epoch().epoch() > 0) last = e.cache().totals();
    }
    return last;
  }
  std::string logs() const {
    std::string out;
    for (const auto& e : events_) {
      if (e.has_log()) out += e.log().message() + "\n";
    }
    return out;
  }

  int stop_after_ = -1;
  bool stop_for_later_ = false;
  std::string checkpoint_dir_;
  std::vector<v1::Resume> resumed_;
  v1::JobResult history_;
  std::vector<v1::Progress> progress_;
  std::vector<v1::JobEvent> events_;
  std::vector<training::StepStats> steps_;
  bool accept_continue_on_ = true;
  int continue_on_ = 0;  // what efficiency mode asked for
  std::map<std::string, std::string> fingerprints_;

 private:
  v1::JobSpec spec_;
  std::string id_ = "job-1";
  std::vector<std::string> devices_;
  std::string output_dir_;
};

// The engine tests' job: `model` fine-tuned on the CSV files `train` and
// `valid` ("text" and "label" columns, as WriteSentimentCsv writes them),
// batch 16, max length 16, warm-up 0.1, weight decay 0.01, seed 3, no
// freezing, `epochs` at `learning_rate`.
inline v1::JobSpec TinyJobSpec(const std::string& model, const std::string& train,
                               const std::string& valid, int epochs, double learning_rate) {
  v1::JobSpec spec;
  spec.set_base_model(model);
  auto dataset = [](v1::Dataset* d, const std::string& path) {
    d->set_path(path);
    d->set_format(v1::DATASET_FORMAT_CSV);
    d->set_text_column("text");
    d->set_label_column("label");
  };
  dataset(spec.mutable_train_dataset(), train);
  dataset(spec.mutable_validation_dataset(), valid);
  v1::Hyperparameters* hp = spec.mutable_hyperparameters();
  hp->set_epochs(epochs);
  hp->set_batch_size(16);
  hp->set_learning_rate(learning_rate);
  hp->set_warmup_ratio(0.1);
  hp->set_weight_decay(0.01);
  hp->set_max_seq_length(16);
  hp->set_seed(3);
  spec.mutable_freeze_policy()->mutable_none();
  return spec;
}

}  // namespace ftd::testing
