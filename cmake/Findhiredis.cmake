# Findhiredis: locate hiredis and provide the imported target hiredis::hiredis.
#
# hiredis >= 1.0 (vcpkg, Conan, CMake builds) ships hiredis-config.cmake with that
# target; it is used first. Debian 12's hiredis 0.14 ships only a variables-style
# HiredisConfig.cmake and hiredis.pc, so otherwise the header and library are searched.
#
# Result variables: hiredis_FOUND, hiredis_VERSION.

include(FindPackageHandleStandardArgs)

if(NOT TARGET hiredis::hiredis)
  find_package(hiredis CONFIG QUIET)
endif()

if(TARGET hiredis::hiredis)
  set(hiredis_INCLUDE_DIR "found-by-config")
  set(hiredis_LIBRARY "found-by-config")
else()
  find_path(hiredis_INCLUDE_DIR NAMES hiredis/hiredis.h)
  find_library(hiredis_LIBRARY NAMES hiredis)
endif()

if(NOT hiredis_VERSION AND hiredis_INCLUDE_DIR AND EXISTS "${hiredis_INCLUDE_DIR}/hiredis/hiredis.h")
  file(STRINGS "${hiredis_INCLUDE_DIR}/hiredis/hiredis.h" _hr_lines REGEX "^#define HIREDIS_(MAJOR|MINOR|PATCH) +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "HIREDIS_${_part} +([0-9]+)" _m "${_hr_lines}")
    set(_hr_${_part} ${CMAKE_MATCH_1})
  endforeach()
  set(hiredis_VERSION "${_hr_MAJOR}.${_hr_MINOR}.${_hr_PATCH}")
endif()

find_package_handle_standard_args(hiredis
  REQUIRED_VARS hiredis_INCLUDE_DIR hiredis_LIBRARY
  VERSION_VAR hiredis_VERSION)

if(hiredis_FOUND AND NOT TARGET hiredis::hiredis)
  add_library(hiredis::hiredis UNKNOWN IMPORTED)
  set_target_properties(hiredis::hiredis PROPERTIES
    IMPORTED_LOCATION "${hiredis_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${hiredis_INCLUDE_DIR}")
endif()
mark_as_advanced(hiredis_INCLUDE_DIR hiredis_LIBRARY)
