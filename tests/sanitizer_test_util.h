// KVTUNE_TEST_ASAN is defined when the tests are built with AddressSanitizer (tools/test
// --sanitize). GCC says ASan with __SANITIZE_ADDRESS__, clang with __has_feature.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define KVTUNE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVTUNE_TEST_ASAN 1
#endif
#endif
