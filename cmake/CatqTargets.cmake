# Helpers that give every catq target the same flags: C++20, warnings as
# errors, and the sanitizers when CATQ_SANITIZE (ASan + UBSan) or CATQ_TSAN
# (ThreadSanitizer) is on.

set(CATQ_WARNINGS -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter)
set(CATQ_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                         -fno-sanitize-recover=undefined)
# The sanitizer build compiles with line tables only (-g1 after the build
# type's -g): a report's stack trace needs no more, and full debug info of
# the Eigen- and gRPC-heavy files makes that build (the one CI runs) about a
# third slower.
set(CATQ_SANITIZER_COMPILE_FLAGS ${CATQ_SANITIZER_FLAGS} -g1)

# ThreadSanitizer, also with line tables only. Every executable of that build
# links tests/tsan/abseil_sync_annotations.cc (catq_tsan_support), which makes
# Debian's uninstrumented Abseil locks visible to TSan, and exports its symbols
# so that they take precedence over the shared library's for every caller.
set(CATQ_TSAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
if(CATQ_TSAN AND (CATQ_SANITIZE OR CATQ_BUILD_FUZZERS))
  message(FATAL_ERROR "CATQ_TSAN cannot be combined with CATQ_SANITIZE or CATQ_BUILD_FUZZERS")
endif()

# CATQ_BUILD_FUZZERS: every target gets libFuzzer's coverage instrumentation
# plus ASan and UBSan; only the fuzzers (tests/fuzz) link the libFuzzer driver.
if(CATQ_BUILD_FUZZERS AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CATQ_BUILD_FUZZERS needs clang: CC=clang CXX=clang++ cmake ...")
endif()
set(CATQ_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=undefined)

function(catq_apply_flags target)
  target_compile_options(${target} PRIVATE ${CATQ_WARNINGS})
  if(CATQ_BUILD_FUZZERS)
    target_compile_options(${target} PRIVATE ${CATQ_FUZZ_FLAGS})
    target_link_options(${target} PRIVATE ${CATQ_SANITIZER_FLAGS})
  elseif(CATQ_SANITIZE)
    target_compile_options(${target} PRIVATE ${CATQ_SANITIZER_COMPILE_FLAGS})
    target_link_options(${target} PRIVATE ${CATQ_SANITIZER_FLAGS})
  elseif(CATQ_TSAN)
    target_compile_options(${target} PRIVATE ${CATQ_TSAN_FLAGS} -g1)
    target_link_options(${target} PRIVATE ${CATQ_TSAN_FLAGS})
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      target_link_libraries(${target} PRIVATE catq_tsan_support)
      set_target_properties(${target} PROPERTIES ENABLE_EXPORTS ON)
    endif()
  endif()
endfunction()

# catq_tsan_tests: builds the tests labelled `tsan` (what the ThreadSanitizer
# stage of scripts/test runs; the rest of that build is left unbuilt).
add_custom_target(catq_tsan_tests)

# catq_library(NAME SOURCES a.cc b.cc DEPS lib...)
function(catq_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  catq_apply_flags(${name})
endfunction()

# catq_test(NAME SOURCES a_test.cc DEPS lib... [LABELS l...] [TSAN])
# One GoogleTest executable, registered with ctest test by test. TSAN marks
# the concurrent tests that the ThreadSanitizer build runs (scripts/test):
# there the whole executable is also one ctest test labelled `tsan`.
# (gtest_discover_tests keeps only the first of several labels, hence a
# test of its own rather than a second label.)
function(catq_test name)
  cmake_parse_arguments(ARG "TSAN" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} catq_test_util GTest::gmock_main)
  catq_apply_flags(${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST PROPERTIES LABELS "${ARG_LABELS}")
  if(ARG_TSAN AND CATQ_TSAN)
    add_dependencies(catq_tsan_tests ${name})
    add_test(NAME ${name}_under_tsan COMMAND ${name})
    set_tests_properties(${name}_under_tsan PROPERTIES LABELS tsan ENVIRONMENT
      "TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1 suppressions=${PROJECT_SOURCE_DIR}/tests/tsan/suppressions.txt")
  endif()
endfunction()
