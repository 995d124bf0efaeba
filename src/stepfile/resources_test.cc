#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

TEST(ResourcesSyntax, MemoryUnits) {
  EXPECT_EQ(*ParseMemory("1048576"), 1048576);
  EXPECT_EQ(*ParseMemory("512Mi"), 512LL << 20);
  EXPECT_EQ(*ParseMemory("2Gi"), 2LL << 30);
  EXPECT_EQ(*ParseMemory("1.5Gi"), 3LL << 29);
  EXPECT_EQ(*ParseMemory("2048Ki"), 2048 * 1024);
  EXPECT_EQ(*ParseMemory("2G"), 2000000000);
  EXPECT_EQ(*ParseMemory("3M"), 3000000);
  EXPECT_EQ(*ParseMemory("7000K"), 7000000);
  EXPECT_EQ(*ParseMemory("1Mi"), 1 << 20);
  // Below 1 MiB the step's group cannot even be made (it said "resources (): mkdir ...").
  EXPECT_EQ(ParseMemory("4K").error().message, "\"4K\" is below the smallest memory limit, 1Mi");
  for (const char* bad : {"lots", "", "-1", "0", "1", "1Ti", "1 Mi", "Mi", "0x10", "inf", "1e9"}) {
    EXPECT_FALSE(ParseMemory(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseMemory("lots").error().message,
            "\"lots\" is not a size (bytes, or a number with K M G Ki Mi Gi)");
}

TEST(ResourcesSyntax, CpusAndPids) {
  EXPECT_DOUBLE_EQ(*ParseCpus("1.5"), 1.5);
  EXPECT_DOUBLE_EQ(*ParseCpus("2"), 2);
  EXPECT_DOUBLE_EQ(*ParseCpus("0.01"), 0.01);
  for (const char* bad : {"-1", "0", "x", "", "1.5cpu", "0.005"}) EXPECT_FALSE(ParseCpus(bad).ok()) << bad;
  // The kernel's least quota is 1 ms per 100 ms: 0.005 was raised to 0.01 without a word.
  EXPECT_EQ(ParseCpus("0.005").error().message, "\"0.005\" is below the smallest CPU limit, 0.01");
  EXPECT_EQ(*ParsePids("20"), 20);
  for (const char* bad : {"-1", "0", "1.5", "", "99999999999"}) EXPECT_FALSE(ParsePids(bad).ok()) << bad;
}

TEST(ResourcesSyntax, KeysInDefinitionsAndItems) {
  auto f = ParseStepFile("spec: {}\n---\nresources: {memory: 1Gi}\nrun:\n  - name: a\n"
                         "    resources: {memory: 64Mi, pids: 20, cpus: 0.5}\n    timeout: 10m\n"
                         "    script: echo\n",
                         "s.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.resources->memory_bytes, 1LL << 30);
  const auto& a = f->definition.run[0];
  EXPECT_EQ(a.resources->memory_bytes, 64LL << 20);
  EXPECT_EQ(a.resources->pids, 20);
  EXPECT_DOUBLE_EQ(a.resources->cpus, 0.5);
  EXPECT_EQ(*a.timeout, std::chrono::minutes(10));
  auto exec = ParseStepFile("spec: {}\n---\nexec: {command: [x]}\nresources: {pids: 5}\n", "e.yml");
  ASSERT_TRUE(exec.ok()) << exec.error().message;
  EXPECT_EQ(exec->definition.resources->pids, 5);
}

TEST(ResourcesSyntax, ErrorsNameFileLineAndKey) {
  auto bad = [](const std::string& item) {
    auto f = ParseStepFile("spec: {}\n---\nrun:\n  - name: a\n    " + item + "\n    script: echo\n", "s.yml");
    return f.ok() ? std::string("ok") : f.error().message;
  };
  EXPECT_EQ(bad("resources: {memory: lots}"),
            "s.yml:5:25: run[0] \"a\" resources memory: \"lots\" is not a size (bytes, or a number "
            "with K M G Ki Mi Gi)");
  EXPECT_EQ(bad("resources: {cpus: -1}"),
            "s.yml:5:23: run[0] \"a\" resources cpus: \"-1\" is not a positive number of CPUs");
  EXPECT_NE(bad("resources: {disk: 1}").find("s.yml:5:17: unknown key \"disk\" in run[0] \"a\" resources"),
            std::string::npos)
      << bad("resources: {disk: 1}");
  EXPECT_NE(bad("timeout: -1s").find("s.yml:5:14: run[0] \"a\": timeout: "), std::string::npos)
      << bad("timeout: -1s");
}

}  // namespace
}  // namespace sr::stepfile
