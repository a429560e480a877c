// Test entry point: the thread count set once, as the program does.
#include <gtest/gtest.h>

#include "common/threads.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  kvtune::set_num_threads(0);
  return RUN_ALL_TESTS();
}
