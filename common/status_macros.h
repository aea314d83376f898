// RETURN_IF_ERROR and ASSIGN_OR_RETURN for absl::Status / absl::StatusOr.
// Debian's Abseil (20220623) ships neither, so the project keeps this one
// copy and uses it everywhere.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FTD_STATUS_CONCAT_INNER_(a, b) a##b
#define FTD_STATUS_CONCAT_(a, b) FTD_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status ftd_status_ = (expr);       \
    if (!ftd_status_.ok()) return ftd_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, F());` declares x from F()'s value, or returns
// F()'s error from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  FTD_ASSIGN_OR_RETURN_IMPL_(FTD_STATUS_CONCAT_(ftd_statusor_, __LINE__), lhs, expr)

#define FTD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)
