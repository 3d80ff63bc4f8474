# Install rules: headers, exported targets, package config and version files, and the
# find modules the config needs for dependencies without CMake configs of their own.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(OUTGROW_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/outgrow"
  CACHE STRING "Where outgrowConfig.cmake is installed (relative to the prefix)")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/outgrow"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.hpp")

set(_outgrow_targets outgrow)
if(OUTGROW_WITH_REDIS)
  list(APPEND _outgrow_targets outgrow_redis)
endif()
install(TARGETS ${_outgrow_targets} EXPORT outgrowTargets)
install(EXPORT outgrowTargets
  NAMESPACE outgrow::
  DESTINATION "${OUTGROW_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/outgrowConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/outgrowConfig.cmake"
  INSTALL_DESTINATION "${OUTGROW_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/outgrowConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)

install(FILES
  "${PROJECT_BINARY_DIR}/outgrowConfig.cmake"
  "${PROJECT_BINARY_DIR}/outgrowConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/outgrowDependencies.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/Findxxhash.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/Findhiredis.cmake"
  DESTINATION "${OUTGROW_INSTALL_CMAKEDIR}")
