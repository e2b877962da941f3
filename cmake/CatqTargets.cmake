# Helpers that give every catq target the same flags: C++20, warnings as
# errors, and the sanitizers when CATQ_SANITIZE is on.

set(CATQ_WARNINGS -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter)
set(CATQ_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                         -fno-sanitize-recover=undefined)
# The sanitizer build compiles with line tables only (-g1 after the build
# type's -g): a report's stack trace needs no more, and full debug info of
# the Eigen- and gRPC-heavy files makes that build (the one CI runs) about a
# third slower.
set(CATQ_SANITIZER_COMPILE_FLAGS ${CATQ_SANITIZER_FLAGS} -g1)

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
  endif()
endfunction()

# catq_library(NAME SOURCES a.cc b.cc DEPS lib...)
function(catq_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  catq_apply_flags(${name})
endfunction()

# catq_test(NAME SOURCES a_test.cc DEPS lib... [LABELS l...])
# One GoogleTest executable, registered with ctest test by test.
function(catq_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} catq_test_util GTest::gmock_main)
  catq_apply_flags(${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
