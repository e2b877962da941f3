// Output determinism (issue 7): the same job, calibrated from token ids (so
// the calibration forward pass runs on as many threads as there are
// workers), gives byte-identical shards and config with 1, 2 and 4
// in-process workers, when run again on the same server, and equal to
// `catq quantize` in process; for block CAT with RTN and with GPTQ weights.
// (Remote workers against in process: tests/worker/remote_worker_test.)
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "core/io/env.h"
#include "core/output/in_process_quantizer.h"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

Recipe CatGptqW4A4Recipe() {
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.weight_quantizer = WeightQuantizer::kGptq;
  return recipe;
}

class JobDeterminismTest : public ::testing::TestWithParam<Recipe> {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("unused.safetensors"),
                                               /*num_layers=*/4));
    // Four documents of token ids (-1 between documents).
    std::string ids;
    for (int32_t t = 0; t < 160; ++t) {
      const int32_t id = t % 40 == 39 ? -1 : 1 + (t * 37 + t / 40) % 190;
      ids.append(reinterpret_cast<const char*>(&id), sizeof(id));
    }
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("calib.ids"), ids));
  }

  // Runs the job on a fresh server with `workers` in-process workers, `runs`
  // times, fetching run r into out/<workers>-<r>.
  void RunJobs(int workers, int runs) {
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join(absl::StrCat("data-", workers));
    options.workers = workers;
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    client::ClientOptions client_options;
    client_options.server = absl::StrCat("127.0.0.1:", (*server)->port());
    auto client = client::QuantizerClient::Connect(client_options);
    ASSERT_OK(client);
    auto model = (*client)->UploadModel(dir_.Join("model"), "tiny4", v1::MODEL_FORMAT_HF);
    ASSERT_OK(model);
    auto calibration =
        (*client)->UploadCalibration(dir_.Join("calib.ids"), v1::CALIBRATION_KIND_TOKEN_IDS, "ids");
    ASSERT_OK(calibration);
    for (int run = 0; run < runs; ++run) {
      v1::SubmitJobRequest request;
      request.set_model_id(model->model_id());
      request.set_calibration_id(calibration->calibration_id());
      *request.mutable_recipe() = RecipeToProto(GetParam());
      auto submitted = (*client)->Submit(request);
      ASSERT_OK(submitted);
      auto job = (*client)->Watch(submitted->job().job_id(), nullptr);
      ASSERT_OK(job);
      ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
      ASSERT_OK((*client)->Fetch(job->job_id(), Out(workers, run)));
    }
    (*server)->Shutdown();
  }

  std::string Out(int workers, int run) const {
    return dir_.Join(absl::StrCat("out/", workers, "-", run));
  }

  testing::TempDir dir_;
};

TEST_P(JobDeterminismTest, SameBytesWithOneTwoAndFourWorkersAndOnEveryRun) {
  ASSERT_NO_FATAL_FAILURE(RunJobs(1, 2));
  ASSERT_NO_FATAL_FAILURE(RunJobs(2, 1));
  ASSERT_NO_FATAL_FAILURE(RunJobs(4, 1));
  {
    SCOPED_TRACE("1 worker, second run");
    testing::ExpectSameShardsAndConfig(Out(1, 0), Out(1, 1));
  }
  for (int workers : {2, 4}) {
    SCOPED_TRACE(absl::StrCat(workers, " workers"));
    testing::ExpectSameShardsAndConfig(Out(1, 0), Out(workers, 0));
  }
  InProcessOptions in_process;
  in_process.calibration.token_ids_path = dir_.Join("calib.ids");
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"),
                                   GetParam(), in_process));
  SCOPED_TRACE("catq quantize in process");
  testing::ExpectSameShardsAndConfig(dir_.Join("direct"), Out(1, 0));
}

INSTANTIATE_TEST_SUITE_P(Recipes, JobDeterminismTest,
                         ::testing::Values(testing::CatW4A4Recipe(), CatGptqW4A4Recipe()),
                         [](const ::testing::TestParamInfo<Recipe>& info) {
                           return info.index == 0 ? std::string("CatRtn") : std::string("CatGptq");
                         });

}  // namespace
}  // namespace catq::server
