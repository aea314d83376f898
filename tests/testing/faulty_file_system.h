// A RocksDB file system for tests that fails writes and syncs on demand: as
// a full disk (ENOSPC: IOStatus::NoSpace) or as an I/O error, for every file
// RocksDB writes (write-ahead log, tables, manifest). Reads are untouched.
// Use: Database::Options::env = faults.env().
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace ftd::testing {

class FaultyFileSystem {
 public:
  enum class Fault { kNone, kNoSpace, kIoError };

  FaultyFileSystem()
      : fault_(std::make_shared<std::atomic<Fault>>(Fault::kNone)),
        fs_(std::make_shared<Wrapper>(rocksdb::FileSystem::Default(), fault_)),
        env_(rocksdb::NewCompositeEnv(fs_)) {}

  // From now on, every write and sync fails so (kNone: none does).
  void Set(Fault fault) { fault_->store(fault); }
  // Writes and syncs refused so far.
  int64_t refused() const { return fs_->refused->load(); }
  rocksdb::Env* env() const { return env_.get(); }

 private:
  using State = std::shared_ptr<std::atomic<Fault>>;

  static rocksdb::IOStatus Refusal(const State& fault, std::atomic<int64_t>* refused) {
    switch (fault->load()) {
      case Fault::kNoSpace:
        ++*refused;
        return rocksdb::IOStatus::NoSpace("injected: no space left on device");
      case Fault::kIoError:
        ++*refused;
        return rocksdb::IOStatus::IOError("injected: input/output error");
      case Fault::kNone:
        break;
    }
    return rocksdb::IOStatus::OK();
  }

  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> file, State fault,
         std::shared_ptr<std::atomic<int64_t>> refused)
        : FSWritableFileOwnerWrapper(std::move(file)),
          fault_(std::move(fault)),
          refused_(std::move(refused)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = Refusal(fault_, refused_.get());
      return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, dbg) : s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = Refusal(fault_, refused_.get());
      return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, info, dbg) : s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = Refusal(fault_, refused_.get());
      return s.ok() ? FSWritableFileOwnerWrapper::Sync(options, dbg) : s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = Refusal(fault_, refused_.get());
      return s.ok() ? FSWritableFileOwnerWrapper::Fsync(options, dbg) : s;
    }

   private:
    const State fault_;
    const std::shared_ptr<std::atomic<int64_t>> refused_;
  };

  class Wrapper : public rocksdb::FileSystemWrapper {
   public:
    Wrapper(const std::shared_ptr<rocksdb::FileSystem>& base, State fault)
        : FileSystemWrapper(base), fault_(std::move(fault)) {}
    const char* Name() const override { return "FaultyFileSystem"; }
    rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
      return Wrapped(
          result, [&] { return FileSystemWrapper::NewWritableFile(name, options, result, dbg); });
    }
    rocksdb::IOStatus ReopenWritableFile(const std::string& name,
                                         const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         rocksdb::IODebugContext* dbg) override {
      return Wrapped(result, [&] {
        return FileSystemWrapper::ReopenWritableFile(name, options, result, dbg);
      });
    }
    rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        rocksdb::IODebugContext* dbg) override {
      return Wrapped(result, [&] {
        return FileSystemWrapper::ReuseWritableFile(name, old_name, options, result, dbg);
      });
    }

    const std::shared_ptr<std::atomic<int64_t>> refused = std::make_shared<std::atomic<int64_t>>(0);

   private:
    // Refused while failing; else `open`'s file, wrapped to fail later.
    template <typename Open>
    rocksdb::IOStatus Wrapped(std::unique_ptr<rocksdb::FSWritableFile>* result, Open open) {
      if (rocksdb::IOStatus s = Refusal(fault_, refused.get()); !s.ok()) return s;
      rocksdb::IOStatus s = open();
      if (s.ok()) result->reset(new File(std::move(*result), fault_, refused));
      return s;
    }

    const State fault_;
  };

  const State fault_;
  const std::shared_ptr<Wrapper> fs_;
  const std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace ftd::testing
