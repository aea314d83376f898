#include "server/training/data/text_dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/json_limits.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "google/protobuf/struct.pb.h"

namespace ftd::training {
namespace {

absl::Status RowError(const std::string& path, int line, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", why));
}

// RFC 4180 records: fields split by commas, quoted fields may hold commas,
// newlines and "" for a quote; records end with LF or CRLF.
struct CsvRecord {
  std::vector<std::string> fields;
  int line = 0;
};

absl::Status TooManyRows(const std::string& path) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": more than ", kMaxDatasetRows,
                                                 " rows, the most ftd reads of a dataset"));
}

// Calls `record_fn` with each record in order (the header first), until it
// returns an error. Errors: a malformed record, or one of more than
// kMaxDatasetColumns fields.
absl::Status ForEachCsvRecord(const std::string& path, std::string_view text,
                              const std::function<absl::Status(const CsvRecord&)>& record_fn) {
  CsvRecord record;
  std::string field;
  int line = 1;
  record.line = 1;
  size_t i = 0;
  bool any = false;  // the current record has content
  auto end_field = [&]() -> absl::Status {
    if (record.fields.size() == kMaxDatasetColumns) {
      return RowError(path, record.line,
                      absl::StrCat("more than ", kMaxDatasetColumns,
                                   " fields, the most ftd reads of a record"));
    }
    record.fields.push_back(std::move(field));
    field.clear();
    return absl::OkStatus();
  };
  auto end_record = [&]() -> absl::Status {
    RETURN_IF_ERROR(end_field());
    RETURN_IF_ERROR(record_fn(record));
    record = CsvRecord();
    any = false;
    return absl::OkStatus();
  };
  while (i < text.size()) {
    char c = text[i];
    if (c == '"' && field.empty() &&
        (i == 0 || text[i - 1] == ',' || text[i - 1] == '\n' || text[i - 1] == '\r')) {
      const int quote_line = line;
      ++i;
      any = true;
      while (true) {
        if (i >= text.size()) return RowError(path, quote_line, "a quoted field is never closed");
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field.push_back(text[i++]);
      }
      if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
        return RowError(path, line,
                        "text after a closing quote (a quote inside a field must be doubled)");
      }
      continue;
    }
    if (c == ',') {
      RETURN_IF_ERROR(end_field());
      any = true;
      ++i;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++i;
      if (any || !field.empty()) RETURN_IF_ERROR(end_record());
      ++line;
      record.line = line;
    } else {
      if (c == '"') return RowError(path, line, "a quote inside an unquoted field");
      field.push_back(c);
      any = true;
      ++i;
    }
  }
  if (any || !field.empty()) RETURN_IF_ERROR(end_record());
  return absl::OkStatus();
}

absl::StatusOr<TextDataset> ReadCsv(const v1::Dataset& spec, std::string_view text,
                                    TextDataset dataset) {
  const std::string path = DatasetName(spec);
  size_t columns = 0;
  int text_col = -1;
  int label_col = -1;
  // Only the text and the label of each record are kept.
  RETURN_IF_ERROR(ForEachCsvRecord(path, text, [&](const CsvRecord& rec) -> absl::Status {
    if (columns == 0) {
      const std::vector<std::string>& header = rec.fields;
      auto column = [&](const std::string& name) -> int {
        auto it = std::find(header.begin(), header.end(), name);
        return it == header.end() ? -1 : static_cast<int>(it - header.begin());
      };
      text_col = column(spec.text_column());
      label_col = column(spec.label_column());
      for (auto [name, col] :
           {std::pair{spec.text_column(), text_col}, {spec.label_column(), label_col}}) {
        if (col < 0) {
          // The header's own names are the file's contents: only their count.
          return RowError(path, 1,
                          absl::StrCat("no column \"", name, "\" in the header (it has ",
                                       header.size(), header.size() == 1 ? " column" : " columns",
                                       "; name the column with text_column or label_column)"));
        }
      }
      columns = header.size();
      return absl::OkStatus();
    }
    if (rec.fields.size() != columns) {
      return RowError(path, rec.line,
                      absl::StrCat("expected ", columns, " fields, got ", rec.fields.size()));
    }
    if (rec.fields[label_col].empty()) return RowError(path, rec.line, "the label is empty");
    if (static_cast<int64_t>(dataset.texts.size()) == kMaxDatasetRows) return TooManyRows(path);
    dataset.texts.push_back(rec.fields[text_col]);
    dataset.labels.push_back(rec.fields[label_col]);
    dataset.lines.push_back(rec.line);
    return absl::OkStatus();
  }));
  if (columns == 0) return RowError(path, 1, "the file has no header row");
  return dataset;
}

absl::StatusOr<std::string> JsonScalar(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return v.string_value();
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      // A whole number prints as one ("3", not "3.0"); only one that fits an
      // int64 exactly is cast (a cast of 2.2e23 is undefined: found by the
      // fuzz target).
      if (std::isfinite(d) && std::fabs(d) < 9007199254740992.0 && d == std::trunc(d)) {
        return absl::StrCat(static_cast<int64_t>(d));
      }
      return absl::StrCat(d);
    }
    case google::protobuf::Value::kBoolValue:
      return std::string(v.bool_value() ? "true" : "false");
    default:
      return absl::InvalidArgumentError("not a string or number");
  }
}

// The text of a dataset file's bytes, without a UTF-8 byte-order mark.
// Errors: an empty file, invalid UTF-8 (naming `name` and the line).
absl::StatusOr<std::string_view> DatasetText(const std::string& name, std::string_view content) {
  std::string_view text = content;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the file is empty"));
  }
  if (const size_t bad = FirstInvalidUtf8(text); bad != std::string_view::npos) {
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + bad, '\n'));
    return RowError(name, line, "not valid UTF-8");
  }
  return text;
}

// Calls `row` with each non-blank line's object (and its 1-based line), in
// order, until it returns an error. Errors: a line that is not a JSON
// object (on line 1, with a hint that the file may be CSV), or one nested
// deeper than kMaxJsonDepth.
absl::Status ForEachJsonObject(
    const std::string& name, std::string_view text,
    const std::function<absl::Status(int, const google::protobuf::Struct&)>& row_fn) {
  int line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view row = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    if (row.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (row.size() > kMaxJsonlLineBytes) {
      return RowError(name, line,
                      absl::StrCat("longer than ", kMaxJsonlLineBytes >> 20,
                                   " MiB, the most ftd reads of a JSONL line"));
    }
    google::protobuf::Struct object;
    const absl::Status parsed = ParseJson(row, &object);
    if (IsJsonTooDeep(parsed)) {
      return RowError(name, line,
                      absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
    }
    if (!parsed.ok()) {
      return RowError(
          name, line,
          line == 1 ? "not a JSON object (is it CSV? name format CSV)" : "not a JSON object");
    }
    RETURN_IF_ERROR(row_fn(line, object));
  }
  return absl::OkStatus();
}

absl::StatusOr<TextDataset> ReadJsonl(const v1::Dataset& spec, std::string_view text,
                                      TextDataset dataset) {
  const std::string path = DatasetName(spec);
  RETURN_IF_ERROR(
      ForEachJsonObject(path, text, [&](int line, const google::protobuf::Struct& object) {
        std::string values[2];
        const std::string* keys[2] = {&spec.text_column(), &spec.label_column()};
        for (int k = 0; k < 2; ++k) {
          auto it = object.fields().find(*keys[k]);
          if (it == object.fields().end())
            return RowError(path, line, absl::StrCat("no key \"", *keys[k], "\""));
          absl::StatusOr<std::string> v = JsonScalar(it->second);
          if (!v.ok())
            return RowError(path, line,
                            absl::StrCat("\"", *keys[k], "\" is ", v.status().message()));
          values[k] = *std::move(v);
        }
        if (values[1].empty()) return RowError(path, line, "the label is empty");
        if (static_cast<int64_t>(dataset.texts.size()) == kMaxDatasetRows) {
          return TooManyRows(path);
        }
        dataset.texts.push_back(std::move(values[0]));
        dataset.labels.push_back(std::move(values[1]));
        dataset.lines.push_back(line);
        return absl::OkStatus();
      }));
  return dataset;
}

}  // namespace

std::string DatasetName(const v1::Dataset& spec) {
  if (spec.file_id().empty()) return spec.path();
  return absl::StrCat(spec.file_id(), " (", std::filesystem::path(spec.path()).filename().string(),
                      ")");
}

absl::StatusOr<TextDataset> ReadTextDataset(const v1::Dataset& spec) {
  // Through regular folders only: the path was canonical when checked.
  absl::StatusOr<std::string> content = ReadFileNoFollow(spec.path(), kMaxDatasetBytes);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the dataset ", DatasetName(spec),
                     spec.file_id().empty() ? absl::StrCat(": ", content.status().message()) : ""));
  }
  return ParseTextDataset(spec, *content);
}

absl::StatusOr<TextDataset> ParseTextDataset(const v1::Dataset& spec, std::string_view content) {
  const std::string name = DatasetName(spec);
  ASSIGN_OR_RETURN(std::string_view text, DatasetText(name, content));
  TextDataset dataset;
  dataset.name = name;
  dataset.fingerprint = Sha256::Hex(content);
  absl::StatusOr<TextDataset> result = spec.format() == v1::DATASET_FORMAT_JSONL
                                           ? ReadJsonl(spec, text, std::move(dataset))
                                           : ReadCsv(spec, text, std::move(dataset));
  if (result.ok() && result->texts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the file has no rows"));
  }
  return result;
}

absl::StatusOr<DatasetShape> DescribeTextDataset(v1::DatasetFormat format, const std::string& name,
                                                 std::string_view content) {
  ASSIGN_OR_RETURN(std::string_view text, DatasetText(name, content));
  DatasetShape shape;
  // The columns are kept in the file's record: their count and length are
  // bounded.
  auto take_columns = [&](int line, std::vector<std::string> columns) -> absl::Status {
    if (columns.size() > kMaxDatasetColumns) {
      return RowError(name, line,
                      absl::StrCat(columns.size(), " columns, more than the ", kMaxDatasetColumns,
                                   " ftd reads"));
    }
    for (const std::string& column : columns) {
      if (column.size() > kMaxColumnNameBytes) {
        return RowError(
            name, line,
            absl::StrCat("a column's name is longer than ", kMaxColumnNameBytes, " bytes"));
      }
    }
    shape.columns = std::move(columns);
    return absl::OkStatus();
  };
  if (format == v1::DATASET_FORMAT_JSONL) {
    RETURN_IF_ERROR(
        ForEachJsonObject(name, text, [&](int line, const google::protobuf::Struct& object) {
          if (shape.rows == kMaxDatasetRows) return TooManyRows(name);
          if (shape.rows++ == 0) {
            std::vector<std::string> keys;
            for (const auto& [key, value] : object.fields()) keys.push_back(key);
            std::sort(keys.begin(), keys.end());
            return take_columns(line, std::move(keys));
          }
          return absl::OkStatus();
        }));
  } else {
    bool header = true;
    RETURN_IF_ERROR(ForEachCsvRecord(name, text, [&](const CsvRecord& rec) -> absl::Status {
      if (header) {
        header = false;
        return take_columns(rec.line, rec.fields);
      }
      if (rec.fields.size() != shape.columns.size()) {
        return RowError(
            name, rec.line,
            absl::StrCat("expected ", shape.columns.size(), " fields, got ", rec.fields.size()));
      }
      if (shape.rows == kMaxDatasetRows) return TooManyRows(name);
      ++shape.rows;
      return absl::OkStatus();
    }));
    if (header) return RowError(name, 1, "the file has no header row");
  }
  if (shape.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the file has no rows"));
  }
  return shape;
}

LabelSet LabelSet::FromLabels(const std::vector<std::string>& labels,
                              const std::vector<std::string>& preferred) {
  std::set<std::string> unique(labels.begin(), labels.end());
  LabelSet set;
  if (!preferred.empty() && std::set<std::string>(preferred.begin(), preferred.end()) == unique &&
      preferred.size() == unique.size()) {
    set.names_ = preferred;
  } else {
    set.names_.assign(unique.begin(), unique.end());
  }
  for (size_t i = 0; i < set.names_.size(); ++i) set.ids_[set.names_[i]] = static_cast<int64_t>(i);
  return set;
}

absl::StatusOr<std::vector<int64_t>> LabelSet::Encode(const TextDataset& dataset) const {
  std::vector<int64_t> ids;
  ids.reserve(dataset.labels.size());
  for (size_t i = 0; i < dataset.labels.size(); ++i) {
    auto it = ids_.find(dataset.labels[i]);
    if (it == ids_.end()) {
      // The label itself is the file's contents: not repeated.
      return RowError(
          dataset.name, dataset.lines[i],
          absl::StrCat("its label is not among the training file's ", names_.size(), " labels"));
    }
    ids.push_back(it->second);
  }
  return ids;
}

}  // namespace ftd::training
