# cmake -DOUTGROW_SOURCE_DIR=<checkout> -DWORK_DIR=<scratch> -DMODE=<mode> -P run.cmake
#
# find_package mode: configure outgrow alone, `cmake --install` it into a temporary
# prefix, then configure, build and run tests/consumer against that prefix only; also
# checks that asking for an incompatible version (1.0) fails.
# add_subdirectory / fetchcontent modes: build tests/consumer embedding the checkout.
# -DCXX_COMPILER=<path>: the compiler of every configure here (the test suite passes
# its own build's: the dev preset's Clang, the sanitizer presets' GCC).
foreach(var OUTGROW_SOURCE_DIR WORK_DIR MODE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

set(compiler_args "")
if(CXX_COMPILER)
  set(compiler_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(consumer_src "${OUTGROW_SOURCE_DIR}/tests/consumer")
set(consumer_build "${WORK_DIR}/consumer-build")

if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run(${CMAKE_COMMAND} -S "${OUTGROW_SOURCE_DIR}" -B "${WORK_DIR}/outgrow-build"
      -DCMAKE_BUILD_TYPE=Release -DOUTGROW_BUILD_TESTS=OFF -DOUTGROW_BUILD_EXAMPLES=OFF
      -DOUTGROW_BUILD_BENCHMARKS=OFF "-DCMAKE_INSTALL_PREFIX=${prefix}" ${compiler_args})
  run(${CMAKE_COMMAND} --install "${WORK_DIR}/outgrow-build")
  foreach(f include/outgrow/outgrow.hpp include/outgrow/core/hash.hpp
            share/cmake/outgrow/outgrowConfig.cmake
            share/cmake/outgrow/outgrowConfigVersion.cmake
            share/cmake/outgrow/outgrowTargets.cmake)
    if(NOT EXISTS "${prefix}/${f}")
      message(FATAL_ERROR "install did not produce ${f}")
    endif()
  endforeach()
  set(configure_args "-DCMAKE_PREFIX_PATH=${prefix}" -DOUTGROW_CONSUMER_MODE=find_package)

  # An incompatible version must be refused.
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${consumer_src}" -B "${WORK_DIR}/consumer-v1"
            ${configure_args} ${compiler_args} -DOUTGROW_REQUIRE_VERSION=1.0
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(rc EQUAL 0)
    message(FATAL_ERROR "find_package(outgrow 1.0) succeeded against 0.1")
  endif()
else()
  set(configure_args -DOUTGROW_CONSUMER_MODE=${MODE} "-DOUTGROW_SOURCE_DIR=${OUTGROW_SOURCE_DIR}")
endif()

run(${CMAKE_COMMAND} -S "${consumer_src}" -B "${consumer_build}" -DCMAKE_BUILD_TYPE=Release
    ${configure_args} ${compiler_args})
run(${CMAKE_COMMAND} --build "${consumer_build}" -j 2)
run("${consumer_build}/consumer")
run("${consumer_build}/consumer_redis")
