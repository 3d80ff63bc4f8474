# vcpkg overlay port for outgrow (header-only C++20).
#
#   vcpkg install outgrow[redis] --overlay-ports=<checkout>/packaging/vcpkg/ports
#
# Where the sources come from, first match wins:
#   1. the environment variable OUTGROW_SOURCE_DIR, if set: a checkout to package
#      (on Windows add it to VCPKG_ENV_PASSTHROUGH in the triplet, or vcpkg drops it);
#   2. the checkout that contains this overlay port (packaging/vcpkg/ports/outgrow is four
#      levels below the repository root), recognised by its CMakeLists.txt and
#      include/outgrow/outgrow.hpp: the usual case when the port is used from a clone;
#   3. otherwise the release tarball from GitHub. REF and SHA512 are filled in at release
#      time (set SHA512 to 0 once and vcpkg prints the real hash); the port copied into a
#      registry uses this branch.
# With a local source tree vcpkg's ABI hash covers only the port files, not the sources:
# after editing the checkout, reinstall with --no-binarycaching (or bump port-version),
# or vcpkg may restore a stale cached package.
set(VCPKG_BUILD_TYPE release) # header-only: one configuration is enough

set(_outgrow_checkout "${CMAKE_CURRENT_LIST_DIR}/../../../..")
if(DEFINED ENV{OUTGROW_SOURCE_DIR} AND NOT "$ENV{OUTGROW_SOURCE_DIR}" STREQUAL "")
  file(TO_CMAKE_PATH "$ENV{OUTGROW_SOURCE_DIR}" SOURCE_PATH)
  if(NOT EXISTS "${SOURCE_PATH}/CMakeLists.txt")
    message(FATAL_ERROR "OUTGROW_SOURCE_DIR=${SOURCE_PATH} is not an outgrow checkout")
  endif()
  message(STATUS "outgrow: using sources from OUTGROW_SOURCE_DIR (${SOURCE_PATH})")
elseif(EXISTS "${_outgrow_checkout}/CMakeLists.txt"
       AND EXISTS "${_outgrow_checkout}/include/outgrow/outgrow.hpp")
  get_filename_component(SOURCE_PATH "${_outgrow_checkout}" ABSOLUTE)
  message(STATUS "outgrow: using the checkout around this overlay port (${SOURCE_PATH})")
else()
  vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO outgrow/outgrow
    REF "v${VERSION}"
    SHA512 0 # placeholder: replace with the release tarball's SHA512 at release time
    HEAD_REF main
  )
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    redis OUTGROW_WITH_REDIS
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DOUTGROW_BUILD_TESTS=OFF
    -DOUTGROW_BUILD_EXAMPLES=OFF
    -DOUTGROW_BUILD_BENCHMARKS=OFF
    -DOUTGROW_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME outgrow CONFIG_PATH share/cmake/outgrow)

# outgrow's CMakeLists.txt turns OUTGROW_WITH_REDIS off quietly when hiredis is missing;
# for the port, a requested feature that was not built is an error.
if("redis" IN_LIST FEATURES)
  file(READ "${CURRENT_PACKAGES_DIR}/share/outgrow/outgrowTargets.cmake" _outgrow_targets)
  if(NOT _outgrow_targets MATCHES "outgrow::redis")
    message(FATAL_ERROR "feature 'redis' requested but outgrow::redis was not installed")
  endif()
endif()

# Header-only: no libraries, no debug tree.
file(REMOVE_RECURSE
  "${CURRENT_PACKAGES_DIR}/debug"
  "${CURRENT_PACKAGES_DIR}/lib"
)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
