# Builds and runs a consumer project of crier in a scratch directory.
#   cmake -DMODE=find_package|add_subdirectory|fetchcontent -DCRIER_SOURCE_DIR=... \
#         -DWORK_DIR=... [-DCMAKE_GENERATOR=...] [-DCMAKE_C_COMPILER=...] \
#         [-DCMAKE_CXX_COMPILER=...] -P run.cmake
# find_package: configure crier alone (no tests/examples/bench), build, install it to a
# prefix under WORK_DIR, then build the consumer against that prefix only.
cmake_minimum_required(VERSION 3.20)

foreach(_v MODE CRIER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "run.cmake: -D${_v}=... is required")
  endif()
endforeach()

set(_here ${CMAKE_CURRENT_LIST_DIR})
set(_common)
if(CMAKE_GENERATOR)
  list(APPEND _common -G ${CMAKE_GENERATOR})
endif()
foreach(_v CMAKE_C_COMPILER CMAKE_CXX_COMPILER)
  if(${_v})
    list(APPEND _common -D${_v}=${${_v}})
  endif()
endforeach()

set(step_timeout 240)
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
                  TIMEOUT ${step_timeout})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

if(MODE STREQUAL "find_package")
  set(_prefix ${WORK_DIR}/prefix)
  step("configure crier" ${CMAKE_COMMAND} -S ${CRIER_SOURCE_DIR} -B ${WORK_DIR}/crier-build ${_common}
       -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF -DCRIER_BUILD_EXAMPLES=OFF
       -DCRIER_BUILD_BENCH=OFF -DCRIER_INSTALL=ON)
  step("build crier" ${CMAKE_COMMAND} --build ${WORK_DIR}/crier-build --parallel 2)
  step("install crier" ${CMAKE_COMMAND} --install ${WORK_DIR}/crier-build --prefix ${_prefix})
  # The installed package must not point back into the source or build tree.
  file(GLOB_RECURSE _cfg ${_prefix}/*.cmake)
  foreach(_f IN LISTS _cfg)
    file(READ ${_f} _text)
    foreach(_tree ${CRIER_SOURCE_DIR} ${WORK_DIR}/crier-build)
      string(FIND "${_text}" "${_tree}" _pos)
      if(NOT _pos EQUAL -1)
        message(FATAL_ERROR "${_f} refers to ${_tree}")
      endif()
    endforeach()
  endforeach()
  step("configure consumer" ${CMAKE_COMMAND} -S ${_here}/find_package -B ${WORK_DIR}/consumer ${_common}
       -DCMAKE_PREFIX_PATH=${_prefix} -DCONSUMER_SOURCE=${_here}/consumer.cpp)
elseif(MODE STREQUAL "add_subdirectory" OR MODE STREQUAL "fetchcontent")
  set(_fc OFF)
  if(MODE STREQUAL "fetchcontent")
    set(_fc ON)
  endif()
  step("configure consumer" ${CMAKE_COMMAND} -S ${_here}/add_subdirectory -B ${WORK_DIR}/consumer ${_common}
       -DCRIER_SOURCE_DIR=${CRIER_SOURCE_DIR} -DCONSUMER_USE_FETCHCONTENT=${_fc}
       -DCONSUMER_SOURCE=${_here}/consumer.cpp)
else()
  message(FATAL_ERROR "run.cmake: unknown MODE ${MODE}")
endif()

step("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --parallel 2)
set(step_timeout 30)
step("run consumer" ${WORK_DIR}/consumer/consumer)
message(STATUS "${MODE}: ${step_output}")
if(NOT step_output MATCHES "crier consumer ok")
  message(FATAL_ERROR "unexpected consumer output: ${step_output}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
