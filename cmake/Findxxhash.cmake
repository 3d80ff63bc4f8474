# Findxxhash: locate xxHash and provide the imported target xxHash::xxhash.
#
# outgrow uses xxHash header-only (XXH_INLINE_ALL), so only the include directory is
# required. A package that ships its own config (vcpkg, Conan, xxHash >= 0.8.2 built
# with CMake) is used first; otherwise the header is searched for (Debian/Ubuntu
# libxxhash-dev ships no CMake config, only xxhash.h and libxxhash.pc).
#
# Result variables: xxhash_FOUND, xxhash_VERSION, xxhash_INCLUDE_DIR.

include(FindPackageHandleStandardArgs)

if(NOT TARGET xxHash::xxhash)
  find_package(xxHash CONFIG QUIET)
endif()

if(TARGET xxHash::xxhash)
  get_target_property(xxhash_INCLUDE_DIR xxHash::xxhash INTERFACE_INCLUDE_DIRECTORIES)
  if(xxHash_VERSION)
    set(xxhash_VERSION ${xxHash_VERSION})
  endif()
else()
  find_path(xxhash_INCLUDE_DIR NAMES xxhash.h)
endif()

if(xxhash_INCLUDE_DIR AND NOT xxhash_VERSION)
  foreach(_inc IN LISTS xxhash_INCLUDE_DIR)
    if(EXISTS "${_inc}/xxhash.h")
      file(STRINGS "${_inc}/xxhash.h" _xxh_lines REGEX "^#define XXH_VERSION_(MAJOR|MINOR|RELEASE) +[0-9]+")
      foreach(_part MAJOR MINOR RELEASE)
        string(REGEX MATCH "XXH_VERSION_${_part} +([0-9]+)" _m "${_xxh_lines}")
        set(_xxh_${_part} ${CMAKE_MATCH_1})
      endforeach()
      set(xxhash_VERSION "${_xxh_MAJOR}.${_xxh_MINOR}.${_xxh_RELEASE}")
      break()
    endif()
  endforeach()
endif()

find_package_handle_standard_args(xxhash
  REQUIRED_VARS xxhash_INCLUDE_DIR
  VERSION_VAR xxhash_VERSION)

if(xxhash_FOUND AND NOT TARGET xxHash::xxhash)
  add_library(xxHash::xxhash INTERFACE IMPORTED)
  set_target_properties(xxHash::xxhash PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${xxhash_INCLUDE_DIR}")
endif()
mark_as_advanced(xxhash_INCLUDE_DIR)
