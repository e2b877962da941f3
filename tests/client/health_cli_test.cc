// `catq health` (the container's HEALTHCHECK) against a real catq server on
// a loopback port: SERVING and exit 0 while it serves, for the server as a
// whole and for each catq service; a non-zero exit naming the server once it
// is gone, or for a service it does not have.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/catq_server.h"
#include "tests/client/catq_runner.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::HasSubstr;

class HealthCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join("data");
    options.workers = 1;
    auto server = server::CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  testing::TempDir dir_;
  std::unique_ptr<server::CatqServer> server_;
  std::string address_;
};

TEST_F(HealthCliTest, ServingServerAndServicesExitZero) {
  for (const std::string service : {"", "catq.v1.Quantizer", "catq.v1.Worker"}) {
    const CommandResult result =
        RunCatq(absl::StrCat("health --server ", address_, " --service '", service, "'"));
    EXPECT_EQ(result.exit_code, 0) << service << ": " << result.output;
    EXPECT_EQ(result.output, "SERVING\n") << service;
  }
}

TEST_F(HealthCliTest, UnknownServiceIsAnError) {
  const CommandResult result =
      RunCatq(absl::StrCat("health --server ", address_, " --service catq.v1.Nothing"));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr(absl::StrCat("health of ", address_)));
  EXPECT_THAT(result.output, HasSubstr("NOT_FOUND"));
}

TEST_F(HealthCliTest, AStoppedServerIsUnhealthy) {
  server_->Shutdown();
  const CommandResult result =
      RunCatq(absl::StrCat("health --server ", address_, " --timeout-seconds 2"));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr(absl::StrCat("health of ", address_)));
  EXPECT_THAT(result.output, HasSubstr("UNAVAILABLE"));
}

}  // namespace
}  // namespace catq
