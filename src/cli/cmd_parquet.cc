// seqrec parquet-info / parquet-cat: inspect a Parquet file with seqrec's own reader.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "seqrec/data/parquet.h"

namespace seqrec::cli {
namespace {

namespace pq = data::parquet;

const char* logical_name(const pq::ColumnSchema& c) {
  switch (c.logical) {
    case pq::LogicalKind::kString: return "STRING";
    case pq::LogicalKind::kTimestamp: return "TIMESTAMP";
    case pq::LogicalKind::kDate: return "DATE";
    case pq::LogicalKind::kInteger: return c.is_unsigned ? "UNSIGNED INTEGER" : "INTEGER";
    case pq::LogicalKind::kDecimal: return "DECIMAL";
    case pq::LogicalKind::kOther: return "OTHER";
    case pq::LogicalKind::kNone: break;
  }
  return "-";
}

// RFC 4180 quoting when the field needs it.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

std::string cell(const pq::Column& col, int64_t row) {
  if (!col.is_list) return csv_field(pq::format_slot(col, row));
  if (!col.list_valid.empty() && !col.list_valid[static_cast<size_t>(row)]) return "";
  std::string s = "[";
  for (int64_t k = col.list_offsets[static_cast<size_t>(row)]; k < col.list_offsets[static_cast<size_t>(row) + 1]; ++k) {
    if (s.size() > 1) s += ",";
    s += col.is_valid(k) ? pq::format_slot(col, k) : "null";
  }
  return csv_field(s + "]");
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string part = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

int run_parquet_info(const CliArgs& args) {
  const pq::File file = pq::File::open(args.input);
  std::printf("file: %s\ncreated_by: %s\nrows: %lld\nrow_groups: %d\ncolumns:\n", file.path().c_str(),
              file.created_by().c_str(), static_cast<long long>(file.num_rows()), file.num_row_groups());
  for (const auto& c : file.columns()) {
    std::printf("  %s: %s %s%s%s max_def=%d max_rep=%d%s%s\n", c.path.c_str(), pq::physical_type_name(c.physical),
                logical_name(c), c.is_list ? " list" : "", c.nullable ? " nullable" : "", c.max_def, c.max_rep,
                c.unsupported.empty() ? "" : " UNSUPPORTED: ", c.unsupported.c_str());
  }
  for (int g = 0; g < file.num_row_groups(); ++g) {
    std::printf("row_group %d: %lld rows\n", g, static_cast<long long>(file.row_group_rows(g)));
    for (size_t c = 0; c < file.columns().size(); ++c) {
      std::string enc;
      for (const auto& e : file.chunk_encodings(g, static_cast<int>(c))) enc += (enc.empty() ? "" : ",") + e;
      std::printf("  %s: %s [%s]\n", file.columns()[c].path.c_str(), file.chunk_codec(g, static_cast<int>(c)).c_str(),
                  enc.c_str());
    }
  }
  return 0;
}

int run_parquet_cat(const CliArgs& args) {
  const pq::File file = pq::File::open(args.input);
  std::vector<std::string> names = split_commas(args.columns);
  if (names.empty())
    for (const auto& c : file.columns()) names.push_back(c.path);
  std::string header;
  for (const auto& n : names) header += (header.empty() ? "" : ",") + csv_field(n);
  std::printf("%s\n", header.c_str());
  int64_t left = args.limit < 0 ? INT64_MAX : args.limit;
  // Row group by row group, so --limit decodes only what it prints.
  for (int g = 0; g < file.num_row_groups() && left > 0; ++g) {
    std::vector<pq::Column> cols;
    for (const auto& n : names) cols.push_back(file.read(g, n));
    const int64_t rows = std::min(left, file.row_group_rows(g));
    std::string line;
    for (int64_t r = 0; r < rows; ++r) {
      line.clear();
      for (size_t c = 0; c < cols.size(); ++c) {
        if (c > 0) line += ',';
        line += cell(cols[c], r);
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    left -= rows;
  }
  return 0;
}

}  // namespace seqrec::cli
