# Dependency finding shared by the build tree and the installed outgrowConfig.cmake.
#
# Core: Boost headers (Asio, Lockfree), {fmt}, xxHash (header-only use), Threads.
# Redis component: hiredis.
# Minimum versions are what Debian 12 ships: Boost 1.74, fmt 9, xxHash 0.8, hiredis 0.14.
#
# Inside outgrowConfig.cmake these macros run with find_dependency so that a missing
# dependency makes find_package(outgrow) fail with a clear message.

include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

macro(_outgrow_dep)
  if(OUTGROW_FIND_AS_DEPENDENCY)
    find_dependency(${ARGN})
  else()
    find_package(${ARGN})
  endif()
endmacro()

macro(outgrow_find_core_dependencies)
  set(THREADS_PREFER_PTHREAD_FLAG ON)
  _outgrow_dep(Threads REQUIRED)
  # Boost 1.74 ships BoostConfig.cmake; prefer it so CMake does not warn about FindBoost.
  _outgrow_dep(Boost 1.74 CONFIG REQUIRED)
  _outgrow_dep(fmt 9 REQUIRED)
  _outgrow_dep(xxhash 0.8 REQUIRED)
endmacro()

macro(outgrow_find_redis_dependencies)
  _outgrow_dep(hiredis 0.14 ${ARGN})
endmacro()
