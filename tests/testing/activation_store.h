// A real RocksDB with the activation cache's column family, for engine tests.
// Header-only: tests that include it link ftd_storage.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/activation_store.h"
#include "storage/database.h"

namespace ftd::testing {

struct TestActivationStore {
  std::unique_ptr<storage::Database> database;
  std::unique_ptr<storage::ActivationStore> store;
};

// Opens (or creates) the database in `path` with the store's column family.
inline absl::StatusOr<TestActivationStore> OpenActivationStore(
    const std::string& path, storage::ActivationStore::Options options = {}) {
  storage::Database::Options db;
  db.path = path;
  db.column_families = {storage::ActivationStore::kColumnFamily};
  db.column_family_options[storage::ActivationStore::kColumnFamily] =
      storage::ActivationStore::ColumnFamilyOptions(options.tuning);
  TestActivationStore out;
  absl::StatusOr<std::unique_ptr<storage::Database>> database = storage::Database::Open(db);
  if (!database.ok()) return database.status();
  out.database = *std::move(database);
  absl::StatusOr<std::unique_ptr<storage::ActivationStore>> store =
      storage::ActivationStore::Open(out.database.get(), options);
  if (!store.ok()) return store.status();
  out.store = *std::move(store);
  return out;
}

}  // namespace ftd::testing
