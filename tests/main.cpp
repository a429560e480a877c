// Test entry point: the thread count set once, as the program does; fixed seeds per test
// (test_util.h, KVTUNE_TEST_SEED).
#include <gtest/gtest.h>

#include "common/threads.h"
#include "test_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new kvtune::test::SeedListener);
  kvtune::set_num_threads(0);
  return RUN_ALL_TESTS();
}
