#include "server/metrics/metrics.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/security_metrics.h"

namespace ftd::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The metric families in Prometheus's text format ("# TYPE name type").
std::set<std::string> Families(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) names.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  return names;
}

class MetricsTest : public ::testing::Test {
 protected:
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  Metrics metrics_{Metrics::Options{"1.2.3", absl::Minutes(10), [this] { return now_; }}};
};

TEST_F(MetricsTest, EveryFamilyIsDocumentedInDocsMetricsAndEveryDocumentedOneExists) {
  metrics_.JobStarted("job-1", "bert", "cpu:0");
  metrics_.RecordEvaluation("job-1", v1::Evaluation());
  metrics_.SetDeviceBusy("cpu:0", false);
  metrics_.SetDeviceMemoryUsed("cuda:0", 1);
  metrics_.RecordGrpcRequest("/ftd.v1.FineTuning/GetJob", "OK");
  metrics_.SetRocksDbSizes("jobs", 1, 0, 0);
  metrics_.SetCpuKernels("Zen", "Zen", "avx avx2 fma");
  // The other subjects' families, on the same registry.
  SecurityMetrics security(metrics_.registry());
  security.Refused("GetJob", "INVALID_TOKEN");
  security.Malformed("GetJob");
  const std::set<std::string> exported = Families(metrics_.Serialize());

  std::ifstream in(std::string(FTD_SOURCE_DIR) + "/docs/metrics.md");
  ASSERT_TRUE(in) << "docs/metrics.md is missing";
  std::stringstream doc;
  doc << in.rdbuf();
  // Table rows start with the metric's name in backquotes.
  std::set<std::string> documented;
  const std::regex row(R"(\n\| `(ftd_[a-z_]+)`)");
  const std::string text = doc.str();
  for (std::sregex_iterator it(text.begin(), text.end(), row), end; it != end; ++it) {
    documented.insert((*it)[1]);
  }
  EXPECT_EQ(exported, documented);
}

TEST_F(MetricsTest, AJobsSeriesCarryItsLabelsAndGoAfterTheRetentionPeriod) {
  metrics_.JobStarted("job-7", "bert-mini", "cpu:0");
  training::StepStats step;
  step.epoch = 2;
  step.seconds = 0.3;
  step.examples = 32;
  step.samples_per_second = 100;
  step.frozen_layers = 4;
  step.total_layers = 6;
  step.layer_forwards_skipped = 96;
  step.layer_backwards_skipped = 128;
  step.cache_hits = 20;
  step.cache_partial_hits = 4;
  step.cache_misses = 8;
  step.cache_bytes_read = 1000;
  step.cache_read_seconds = {0.002, 0.003};
  step.allreduce_bytes = 4096;
  metrics_.RecordStep("job-7", step);
  metrics_.RecordStep("job-404", step);  // not started: only the daemon-wide counts

  const std::string labels = R"({device="cpu:0",job_id="job-7",model="bert-mini"})";
  std::string text = metrics_.Serialize();
  EXPECT_THAT(text, HasSubstr("ftd_job_epoch" + labels + " 2\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_samples_per_second" + labels + " 100\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_layer_forward_passes_skipped_total" + labels + " 96\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_hits_total" + labels + " 20\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_partial_hits_total" + labels + " 4\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_misses_total" + labels + " 8\n"));
  EXPECT_THAT(text, HasSubstr("ftd_allreduce_bytes_total" + labels + " 4096\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_read_bytes_total 2000\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_read_duration_seconds_count 4\n"));
  EXPECT_THAT(text, HasSubstr(R"(ftd_build_info{version="1.2.3"} 1)"));

  metrics_.JobStopped("job-7");
  now_ += absl::Minutes(9);
  text = metrics_.Serialize();
  EXPECT_THAT(text, HasSubstr("ftd_job_samples_per_second" + labels + " 0\n"));  // not running
  now_ += absl::Minutes(1);
  EXPECT_THAT(metrics_.Serialize(), Not(HasSubstr("job-7")));
}

TEST_F(MetricsTest, ScrapeHooksRunAtEachCollectionAndCountersOnlyRise) {
  int64_t evictions = 3;
  int calls = 0;
  metrics_.AddScrapeHook([&] {
    ++calls;
    metrics_.SetCacheEvictions(evictions);
    metrics_.SetCacheSize(100, 1000);
  });
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("ftd_cache_evictions_total 3\n"));
  evictions = 5;
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("ftd_cache_evictions_total 5\n"));
  evictions = 1;  // a store that started over: the counter keeps its value
  const std::string text = metrics_.Serialize();
  EXPECT_THAT(text, HasSubstr("ftd_cache_evictions_total 5\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_stored_bytes 100\n"));
  EXPECT_THAT(text, HasSubstr("ftd_cache_capacity_bytes 1000\n"));
  EXPECT_EQ(calls, 3);
}

TEST(GrpcCodeNameTest, NamesEveryCode) {
  EXPECT_EQ(GrpcCodeName(0), "OK");
  EXPECT_EQ(GrpcCodeName(3), "INVALID_ARGUMENT");
  EXPECT_EQ(GrpcCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcCodeName(99), "UNKNOWN");
}

}  // namespace
}  // namespace ftd::metrics
