#include "storage/rocksdb_job_store.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "google/protobuf/unknown_field_set.h"
#include "rocksdb/write_batch.h"

namespace ftd::storage {
namespace {

constexpr char kJobPrefix = 'j';
constexpr char kEventPrefix = 'e';
constexpr char kRequestPrefix = 'r';
// A deleted job whose folder may still be on disk (its delete's last step).
constexpr char kDeletedPrefix = 'd';
constexpr char kThinnedPrefix = 't';
constexpr char kNextJobKey[] = "m:next_job";
// The records' layout: absent before v1 was settled (1), then 2.
constexpr char kSchemaKey[] = "m:schema";
constexpr char kSchema[] = "2";

void AppendBigEndian(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t ReadBigEndian(std::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) v = (v << 8) | static_cast<uint8_t>(bytes[i]);
  return v;
}

std::string JobKey(uint64_t number) {
  std::string key(1, kJobPrefix);
  AppendBigEndian(&key, number);
  return key;
}

std::string EventKey(uint64_t number, uint64_t sequence) {
  std::string key(1, kEventPrefix);
  AppendBigEndian(&key, number);
  AppendBigEndian(&key, sequence);
  return key;
}

std::string ThinnedKey(uint64_t number) {
  std::string key(1, kThinnedPrefix);
  AppendBigEndian(&key, number);
  return key;
}

std::string DeletedKey(uint64_t number) {
  std::string key(1, kDeletedPrefix);
  AppendBigEndian(&key, number);
  return key;
}

// Request ids are unique within a tenant: "r<id>" for tenant "" (as before
// tenants), "r\0<tenant>\0<id>" for the others (ids and tenant names are
// printable).
std::string RequestKey(const std::string& tenant, const std::string& request_id) {
  if (tenant.empty()) return std::string(1, kRequestPrefix) + request_id;
  return absl::StrCat(std::string(1, kRequestPrefix), std::string(1, '\0'), tenant,
                      std::string(1, '\0'), request_id);
}

bool Matches(const v1::Job& job, const JobFilter& filter) {
  if (!filter.states.empty() &&
      std::find(filter.states.begin(), filter.states.end(), job.state()) == filter.states.end()) {
    return false;
  }
  for (const auto& [key, value] : filter.labels) {
    auto it = job.spec().labels().find(key);
    if (it == job.spec().labels().end() || it->second != value) return false;
  }
  return !filter.tenant.has_value() || job.tenant() == *filter.tenant;
}

absl::Status ParseToken(const std::string& token, uint64_t* out) {
  if (token.empty()) {
    *out = 0;
    return absl::OkStatus();
  }
  if (!absl::SimpleAtoi(token, out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: ", QuoteUserText(token), " is not a token from a previous page"));
  }
  return absl::OkStatus();
}

// A page of jobs continues after job `N` ("aN", oldest first) or before it
// ("dN", newest first); the letter keeps a token to the order it was made
// for.
absl::Status ParseJobsToken(const std::string& token, bool newest_first, uint64_t* out) {
  *out = 0;
  if (token.empty()) return absl::OkStatus();
  const char order = newest_first ? 'd' : 'a';
  if (token[0] != order && (token[0] == 'a' || token[0] == 'd')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token: ", QuoteUserText(token),
        " was made for the other order; list with the same order_by"));
  }
  if (token[0] != order || !absl::SimpleAtoi(token.substr(1), out) || *out == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: ", QuoteUserText(token), " is not a token from a previous page"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string RocksDbJobStore::JobId(uint64_t number) { return absl::StrCat("job-", number); }

uint64_t RocksDbJobStore::ParseJobId(const std::string& job_id) {
  uint64_t number = 0;
  if (!absl::StartsWith(job_id, "job-")) return 0;
  std::string digits = job_id.substr(4);
  // Digits only: SimpleAtoi would take " 3" or "3\n" for job 3.
  if (digits.empty() || digits[0] == '0' || digits.size() > 19 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  if (!absl::SimpleAtoi(digits, &number)) return 0;
  return number;
}

absl::StatusOr<std::unique_ptr<RocksDbJobStore>> RocksDbJobStore::Create(Database* database) {
  return Create(database, Options());
}

absl::StatusOr<std::unique_ptr<RocksDbJobStore>> RocksDbJobStore::Create(Database* database,
                                                                         Options options) {
  if (options.max_events_per_job < 0) {
    return absl::InvalidArgumentError("max_job_events: must not be negative");
  }
  const Database::Session session = database->session();
  rocksdb::ColumnFamilyHandle* cf = session.cf("jobs");
  if (cf == nullptr) return absl::InternalError("the database has no \"jobs\" column family");
  std::string value;
  rocksdb::Status s = session.db()->Get(rocksdb::ReadOptions(), cf, kNextJobKey, &value);
  uint64_t next_job = 1;
  if (s.ok()) {
    if (value.size() != 8) return absl::DataLossError("job store: the next-job counter is corrupt");
    next_job = ReadBigEndian(value);
  } else if (!s.IsNotFound()) {
    return FromRocksDb(s, "job store: reading the next-job counter");
  }
  RETURN_IF_ERROR(Migrate(database, session));
  return std::unique_ptr<RocksDbJobStore>(new RocksDbJobStore(database, next_job, options));
}

// Schema 1 -> 2 (the v1 API settled): a job's request_id moved out of its
// spec (JobSpec field 12, now reserved) into Job.request_id, and log levels
// moved up one so that 0 is LEVEL_UNSPECIFIED (INFO 0 -> 1, WARNING 1 -> 2,
// ERROR 2 -> 3). Idempotent until the schema mark, written last, is there.
absl::Status RocksDbJobStore::Migrate(Database* database, const Database::Session& session) {
  rocksdb::ColumnFamilyHandle* cf = session.cf("jobs");
  std::string schema;
  rocksdb::Status s = session.db()->Get(rocksdb::ReadOptions(), cf, kSchemaKey, &schema);
  if (s.ok() && schema == kSchema) return absl::OkStatus();
  if (!s.ok() && !s.IsNotFound()) return FromRocksDb(s, "job store: reading its schema");
  if (s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job store: schema ", schema, " is newer than this ftd's (", kSchema, ")"));
  }
  rocksdb::WriteBatch batch;
  int64_t jobs = 0, events = 0;
  std::unique_ptr<rocksdb::Iterator> iter(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  for (iter->SeekToFirst(); iter->Valid(); iter->Next()) {
    const char prefix = iter->key().empty() ? '\0' : iter->key()[0];
    if (prefix == kJobPrefix) {
      v1::Job job;
      if (!job.ParseFromArray(iter->value().data(), static_cast<int>(iter->value().size()))) {
        continue;  // damaged: left as it is (it is quarantined)
      }
      const google::protobuf::UnknownFieldSet& unknown =
          job.spec().GetReflection()->GetUnknownFields(job.spec());
      for (int i = 0; i < unknown.field_count(); ++i) {
        if (unknown.field(i).number() == 12 &&
            unknown.field(i).type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED &&
            job.request_id().empty()) {
          job.set_request_id(unknown.field(i).length_delimited());
        }
      }
      job.mutable_spec()->GetReflection()->MutableUnknownFields(job.mutable_spec())->Clear();
      batch.Put(cf, iter->key(), job.SerializeAsString());
      ++jobs;
    } else if (prefix == kEventPrefix) {
      v1::JobEvent event;
      if (!event.ParseFromArray(iter->value().data(), static_cast<int>(iter->value().size())) ||
          !event.has_log()) {
        continue;
      }
      const int level = static_cast<int>(event.log().level());
      if (level >= 0 && level <= 2) {
        event.mutable_log()->set_level(static_cast<v1::JobEvent::Log::Level>(level + 1));
        batch.Put(cf, iter->key(), event.SerializeAsString());
        ++events;
      }
    }
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: reading records to migrate"));
  batch.Put(cf, kSchemaKey, kSchema);
  rocksdb::WriteOptions options;
  options.sync = true;
  RETURN_IF_ERROR(
      FromRocksDb(database->Write(session, options, &batch), "job store: migrating its records"));
  if (jobs + events > 0) {
    Log(LogLevel::kInfo, absl::StrCat("job store: migrated ", jobs, " jobs and ", events,
                                      " log events to schema ", kSchema));
  }
  return absl::OkStatus();
}

RocksDbJobStore::RocksDbJobStore(Database* database, uint64_t next_job, Options options)
    : database_(database),
      options_(options),
      next_job_(next_job),
      numbers_(options.ids, options.now) {}

absl::StatusOr<v1::Job> RocksDbJobStore::CreateJob(v1::Job job, v1::JobEvent first_event) {
  absl::MutexLock lock(&mu_);
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  const uint64_t number = numbers_.Next(next_job_);
  job.set_id(JobId(number));
  first_event.set_job_id(job.id());
  first_event.set_sequence(1);

  rocksdb::WriteBatch batch;
  std::string counter;
  AppendBigEndian(&counter, number + 1);
  batch.Put(cf, kNextJobKey, counter);
  batch.Put(cf, JobKey(number), job.SerializeAsString());
  batch.Put(cf, EventKey(number, 1), first_event.SerializeAsString());
  if (!job.request_id().empty()) {
    std::string value;
    AppendBigEndian(&value, number);
    batch.Put(cf, RequestKey(job.tenant(), job.request_id()), value);
  }
  rocksdb::WriteOptions options;
  options.sync = true;
  if (absl::Status written = FromRocksDb(database_->Write(session, options, &batch),
                                         absl::StrCat("job store: writing ", job.id()));
      !written.ok()) {
    // A write reported failed may still be in RocksDB's log (appended, its
    // sync failed) and come back at a reopen: its number is not given again.
    next_job_ = number + 1;
    return written;
  }
  next_job_ = number + 1;
  last_sequence_[number] = 1;
  return job;
}

absl::StatusOr<v1::Job> RocksDbJobStore::ReadJob(const Database::Session& session,
                                                 uint64_t number) {
  std::string value;
  rocksdb::Status s =
      session.db()->Get(rocksdb::ReadOptions(), session.cf("jobs"), JobKey(number), &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("no job ", JobId(number)));
  RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("job store: reading ", JobId(number))));
  v1::Job job;
  if (!job.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("job store: the record of ", JobId(number), " is corrupt"));
  }
  return job;
}

absl::StatusOr<v1::Job> RocksDbJobStore::GetJob(const std::string& job_id) {
  uint64_t number = ParseJobId(job_id);
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job_id)));
  return ReadJob(database_->session(), number);
}

absl::StatusOr<std::optional<v1::Job>> RocksDbJobStore::FindByRequestId(
    const std::string& tenant, const std::string& request_id) {
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  std::string value;
  rocksdb::Status s =
      session.db()->Get(rocksdb::ReadOptions(), cf, RequestKey(tenant, request_id), &value);
  if (s.IsNotFound()) return std::optional<v1::Job>();
  RETURN_IF_ERROR(FromRocksDb(s, "job store: reading the request id index"));
  absl::StatusOr<v1::Job> job = ReadJob(session, ReadBigEndian(value));
  // The job was deleted (its record unreadable then): the id is free.
  if (absl::IsNotFound(job.status())) return std::optional<v1::Job>();
  RETURN_IF_ERROR(job.status());
  return std::optional<v1::Job>(*std::move(job));
}

absl::Status RocksDbJobStore::UpdateJob(const v1::Job& job) {
  uint64_t number = ParseJobId(job.id());
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job.id())));
  absl::MutexLock lock(&mu_);
  if (number >= next_job_) return absl::NotFoundError(absl::StrCat("no job ", UserTextPrefix(job.id())));
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  rocksdb::WriteBatch batch;
  batch.Put(cf, JobKey(number), job.SerializeAsString());
  rocksdb::WriteOptions options;
  options.sync = true;
  return FromRocksDb(database_->Write(session, options, &batch),
                     absl::StrCat("job store: writing ", job.id()));
}

absl::Status RocksDbJobStore::DeleteJob(const std::string& job_id) {
  const uint64_t number = ParseJobId(job_id);
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job_id)));
  absl::MutexLock lock(&mu_);
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  // A damaged record is deleted too; its request id (unreadable) stays
  // indexed, and FindByRequestId then reports the job as gone.
  absl::StatusOr<v1::Job> read = ReadJob(session, number);
  if (!read.ok() && !absl::IsDataLoss(read.status())) return read.status();
  const v1::Job job = read.ok() ? *std::move(read) : v1::Job();
  rocksdb::WriteBatch batch;
  batch.Delete(cf, JobKey(number));
  batch.DeleteRange(cf, EventKey(number, 0), EventKey(number + 1, 0));
  batch.Delete(cf, ThinnedKey(number));
  batch.Put(cf, DeletedKey(number), "");
  if (!job.request_id().empty()) {
    std::string value;
    rocksdb::Status s = session.db()->Get(rocksdb::ReadOptions(), cf,
                                          RequestKey(job.tenant(), job.request_id()), &value);
    RETURN_IF_ERROR(FromRocksDb(s.IsNotFound() ? rocksdb::Status::OK() : s,
                                "job store: reading the request id index"));
    if (s.ok() && ReadBigEndian(value) == number)
      batch.Delete(cf, RequestKey(job.tenant(), job.request_id()));
  }
  rocksdb::WriteOptions options;
  options.sync = true;
  RETURN_IF_ERROR(FromRocksDb(database_->Write(session, options, &batch),
                              absl::StrCat("job store: deleting ", job_id)));
  last_sequence_.erase(number);
  thinned_.erase(number);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RocksDbJobStore::DeletedJobs() {
  std::vector<std::string> ids;
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  std::unique_ptr<rocksdb::Iterator> iter(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string prefix(1, kDeletedPrefix);
  for (iter->Seek(prefix); iter->Valid() && iter->key().starts_with(prefix); iter->Next()) {
    ids.push_back(JobId(ReadBigEndian(iter->key().ToStringView().substr(1))));
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: listing deleted jobs"));
  return ids;
}

absl::Status RocksDbJobStore::ForgetDeleted(const std::string& job_id) {
  const uint64_t number = ParseJobId(job_id);
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job_id)));
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  rocksdb::WriteBatch batch;
  batch.Delete(cf, DeletedKey(number));
  rocksdb::WriteOptions options;
  options.sync = true;
  return FromRocksDb(database_->Write(session, options, &batch),
                     absl::StrCat("job store: forgetting deleted ", job_id));
}

absl::StatusOr<int64_t> RocksDbJobStore::LastSequence(const Database::Session& session,
                                                      uint64_t number) {
  auto it = last_sequence_.find(number);
  if (it != last_sequence_.end()) return it->second;
  std::unique_ptr<rocksdb::Iterator> iter(
      session.db()->NewIterator(rocksdb::ReadOptions(), session.cf("jobs")));
  iter->SeekForPrev(EventKey(number, UINT64_MAX));
  int64_t last = 0;
  std::string prefix = EventKey(number, 0).substr(0, 9);
  if (iter->Valid() && iter->key().starts_with(prefix)) {
    last = static_cast<int64_t>(ReadBigEndian(iter->key().ToStringView().substr(9)));
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: reading events"));
  last_sequence_[number] = last;
  return last;
}

absl::StatusOr<RocksDbJobStore::Thinned> RocksDbJobStore::ThinnedOf(
    const Database::Session& session, uint64_t number) {
  auto it = thinned_.find(number);
  if (it != thinned_.end()) return it->second;
  Thinned thinned;
  std::string value;
  rocksdb::Status s =
      session.db()->Get(rocksdb::ReadOptions(), session.cf("jobs"), ThinnedKey(number), &value);
  if (s.ok()) {
    if (value.size() == 16) {
      thinned.thinned_through = static_cast<int64_t>(ReadBigEndian(value.substr(0, 8)));
      thinned.dropped = static_cast<int64_t>(ReadBigEndian(value.substr(8)));
    } else {
      // Damaged: the history is looked at again from its start, and the
      // count of what went starts over; its events are served either way.
      Log(LogLevel::kWarning, absl::StrCat("job store: the history bound of ", JobId(number),
                                           " cannot be read; it starts over"));
    }
  } else if (!s.IsNotFound()) {
    return FromRocksDb(s, "job store: reading a history bound");
  }
  thinned_[number] = thinned;
  return thinned;
}

absl::StatusOr<std::optional<RocksDbJobStore::Thinned>> RocksDbJobStore::ThinLocked(
    const Database::Session& session, uint64_t number, int64_t sequence,
    rocksdb::WriteBatch* batch) {
  const int64_t bound = options_.max_events_per_job;
  if (bound <= 0) return std::nullopt;
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  ASSIGN_OR_RETURN(Thinned thinned, ThinnedOf(session, number));
  const int64_t chunk = std::max<int64_t>(1, bound / 8);
  if (sequence - thinned.thinned_through <= bound + chunk) return std::nullopt;
  // Events (thinned_through, through] are looked at: the ones a reader can
  // do without go.
  const int64_t through = sequence - bound;
  std::unique_ptr<rocksdb::Iterator> iter(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string end = EventKey(number, static_cast<uint64_t>(through) + 1);
  for (iter->Seek(EventKey(number, static_cast<uint64_t>(thinned.thinned_through) + 1));
       iter->Valid() && iter->key().compare(end) < 0; iter->Next()) {
    v1::JobEvent old;
    const bool parsed =
        old.ParseFromArray(iter->value().data(), static_cast<int>(iter->value().size()));
    const bool keep =
        parsed && (old.has_state_change() ||
                   (old.has_log() && old.log().level() >= v1::JobEvent::Log::LEVEL_WARNING));
    if (keep) continue;
    batch->Delete(cf, iter->key());
    ++thinned.dropped;
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: thinning a history"));
  thinned.thinned_through = through;
  std::string value;
  AppendBigEndian(&value, static_cast<uint64_t>(thinned.thinned_through));
  AppendBigEndian(&value, static_cast<uint64_t>(thinned.dropped));
  batch->Put(cf, ThinnedKey(number), value);
  return thinned;
}

absl::StatusOr<v1::JobEvent> RocksDbJobStore::AppendEvent(v1::JobEvent event, const v1::Job* job) {
  uint64_t number = ParseJobId(event.job_id());
  absl::MutexLock lock(&mu_);
  if (number == 0 || number >= next_job_) {
    return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(event.job_id())));
  }
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  ASSIGN_OR_RETURN(int64_t last, LastSequence(session, number));
  event.set_sequence(last + 1);
  rocksdb::WriteBatch batch;
  batch.Put(cf, EventKey(number, event.sequence()), event.SerializeAsString());
  ASSIGN_OR_RETURN(std::optional<Thinned> thinned,
                   ThinLocked(session, number, event.sequence(), &batch));
  rocksdb::WriteOptions options;
  if (job != nullptr) {
    batch.Put(cf, JobKey(number), job->SerializeAsString());
    options.sync = true;
  }
  if (absl::Status written =
          FromRocksDb(database_->Write(session, options, &batch),
                      absl::StrCat("job store: writing an event of ", event.job_id()));
      !written.ok()) {
    // It may come back at a reopen (see CreateJob): read the numbers from
    // the store again next time.
    last_sequence_.erase(number);
    thinned_.erase(number);
    return written;
  }
  if (job != nullptr &&
      (job->state() == v1::JOB_STATE_SUCCEEDED || job->state() == v1::JOB_STATE_FAILED ||
       job->state() == v1::JOB_STATE_CANCELLED)) {
    // An ended job's numbers are rarely needed again (and then read from
    // the store): what is kept here does not grow with every job run.
    last_sequence_.erase(number);
    thinned_.erase(number);
    return event;
  }
  last_sequence_[number] = event.sequence();
  if (thinned.has_value()) thinned_[number] = *thinned;
  return event;
}

size_t RocksDbJobStore::tracked_jobs() {
  absl::MutexLock lock(&mu_);
  return std::max(last_sequence_.size(), thinned_.size());
}

absl::StatusOr<JobPage> RocksDbJobStore::ListJobs(const JobFilter& filter, int page_size,
                                                  const std::string& page_token) {
  if (page_size <= 0) return absl::InvalidArgumentError("page_size must be positive");
  uint64_t from = 0;
  RETURN_IF_ERROR(ParseJobsToken(page_token, filter.newest_first, &from));
  JobPage page;
  size_t bytes = 0;  // of the records in the page
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  std::unique_ptr<rocksdb::Iterator> iter(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string prefix(1, kJobPrefix);
  if (filter.newest_first) {
    iter->SeekForPrev(JobKey(from == 0 ? std::numeric_limits<uint64_t>::max() : from - 1));
  } else {
    iter->Seek(JobKey(from + 1));
  }
  for (; iter->Valid() && iter->key().starts_with(prefix);
       filter.newest_first ? iter->Prev() : iter->Next()) {
    v1::Job job;
    if (!job.ParseFromArray(iter->value().data(), static_cast<int>(iter->value().size()))) {
      page.unreadable.push_back(JobId(ReadBigEndian(iter->key().ToStringView().substr(1))));
      continue;
    }
    if (!Matches(job, filter)) continue;
    if (static_cast<int>(page.jobs.size()) == page_size ||
        (!page.jobs.empty() && bytes + iter->value().size() > kMaxJobPageBytes)) {
      // A further match exists: the page ends at the last job taken.
      page.next_page_token =
          absl::StrCat(filter.newest_first ? "d" : "a", ParseJobId(page.jobs.back().id()));
      break;
    }
    bytes += iter->value().size();
    page.jobs.push_back(std::move(job));
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: listing jobs"));
  return page;
}

absl::StatusOr<std::optional<v1::JobEvent>> RocksDbJobStore::LastEvent(const std::string& job_id) {
  const uint64_t number = ParseJobId(job_id);
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job_id)));
  absl::MutexLock lock(&mu_);
  if (number >= next_job_) return absl::NotFoundError(absl::StrCat("no job ", UserTextPrefix(job_id)));
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  ASSIGN_OR_RETURN(const int64_t last, LastSequence(session, number));
  if (last == 0) return std::optional<v1::JobEvent>();
  std::string value;
  RETURN_IF_ERROR(
      FromRocksDb(session.db()->Get(rocksdb::ReadOptions(), cf,
                                    EventKey(number, static_cast<uint64_t>(last)), &value),
                  absl::StrCat("job store: reading the last event of ", job_id)));
  v1::JobEvent event;
  if (!event.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("job store: the last event of ", job_id, " does not parse"));
  }
  return std::optional<v1::JobEvent>(std::move(event));
}

absl::StatusOr<EventPage> RocksDbJobStore::ListEvents(const std::string& job_id,
                                                      int64_t after_sequence, int page_size,
                                                      const std::string& page_token) {
  if (page_size <= 0) return absl::InvalidArgumentError("page_size must be positive");
  uint64_t number = ParseJobId(job_id);
  if (number == 0) return absl::NotFoundError(absl::StrCat("no job ", QuoteUserText(job_id)));
  EventPage page;
  absl::MutexLock lock(&mu_);
  if (number >= next_job_) return absl::NotFoundError(absl::StrCat("no job ", UserTextPrefix(job_id)));
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf("jobs");
  ASSIGN_OR_RETURN(Thinned thinned, ThinnedOf(session, number));
  page.dropped = thinned.dropped;
  uint64_t after = static_cast<uint64_t>(std::max<int64_t>(after_sequence, 0));
  if (!page_token.empty()) RETURN_IF_ERROR(ParseToken(page_token, &after));
  const std::string prefix = EventKey(number, 0).substr(0, 9);
  std::unique_ptr<rocksdb::Iterator> iter(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  for (iter->Seek(EventKey(number, after + 1)); iter->Valid() && iter->key().starts_with(prefix);
       iter->Next()) {
    if (static_cast<int>(page.events.size()) == page_size) {
      page.next_page_token = absl::StrCat(page.events.back().sequence());
      break;
    }
    v1::JobEvent event;
    if (!event.ParseFromArray(iter->value().data(), static_cast<int>(iter->value().size()))) {
      return absl::DataLossError(absl::StrCat("job store: an event of ", job_id, " is corrupt"));
    }
    page.events.push_back(std::move(event));
  }
  RETURN_IF_ERROR(FromRocksDb(iter->status(), "job store: listing events"));
  return page;
}

}  // namespace ftd::storage
