# Compiles one translation unit for a compile-fail test (see CMakeLists.txt here):
#   cmake -DEXPECT=fail|compile -P run.cmake -- <compiler> <arguments...>
# EXPECT=compile (control): passes when the compiler succeeds.
# EXPECT=fail: a successful compile fails the test without printing the compiler's output, so
# the test's PASS_REGULAR_EXPRESSION (the missing requirement, as the compiler names it) can
# only match a real diagnostic; when the compiler fails, its output is printed for ctest to match.
cmake_minimum_required(VERSION 3.20)

set(_cmd)
set(_after_dashes OFF)
math(EXPR _last "${CMAKE_ARGC} - 1")
foreach(_i RANGE 1 ${_last})
  if(_after_dashes)
    list(APPEND _cmd "${CMAKE_ARGV${_i}}")
  elseif(CMAKE_ARGV${_i} STREQUAL "--")
    set(_after_dashes ON)
  endif()
endforeach()
if(NOT _cmd OR NOT EXPECT MATCHES "^(fail|compile)$")
  message(FATAL_ERROR "usage: cmake -DEXPECT=fail|compile -P run.cmake -- <compiler> <arguments...>")
endif()

# Plain ASCII quotes in GCC's diagnostics ('t.heartbeat()', not typographic quotes), so the
# tests' regular expressions do not depend on the locale ctest runs in.
set(ENV{LC_ALL} C)
execute_process(COMMAND ${_cmd} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
list(JOIN _cmd " " _shown)

if(EXPECT STREQUAL "compile")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "control translation unit does not compile (${_rc}):\n${_shown}\n${_out}")
  endif()
  message("compiled, as it must:\n${_shown}\n${_out}")
elseif(_rc EQUAL 0)
  message(FATAL_ERROR "COMPILED, but must not: the concept accepted a type that lacks a requirement:\n${_shown}")
else()
  message("rejected, as it must (exit ${_rc}):\n${_shown}\n${_out}")
endif()
