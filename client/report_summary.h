// File: client/report_summary.h
//
// The summary `catq quantize` prints after a quantization, read from the
// report's JSON (core/output/quantization_report.h, QuantizationReportToJson):
// the mean weight SQNR per layer and site, totals, the measured SQNR per site
// when the job was calibrated with samples, whether any transform runs
// online (none: the output is zero-overhead, plain compressed-tensors), the
// output directory, and the evaluation line when the report has one. The in-process path prints it
// from the report it just made, the --server path from the fetched catq_report.json, so both print
// the same thing.
//
//   PrintReportSummary(QuantizationReportToJson(report), out_dir, std::cout);
//
// A figure the JSON lacks or holds as null prints as nan (an exact weight's
// null weight SQNR as inf, as the report documents). Thread-safe (no state).
#ifndef CATQ_CLIENT_REPORT_SUMMARY_H_
#define CATQ_CLIENT_REPORT_SUMMARY_H_

#include <ostream>
#include <string>

#include "nlohmann/json.hpp"

namespace catq::cli {

void PrintReportSummary(const nlohmann::json& report, const std::string& out_dir, std::ostream& os);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_REPORT_SUMMARY_H_
