# Unity translation units for outgrow's own test and example builds (never used by the
# installed library): several source files compiled as one, each inside its own
# namespace, after every header they include (hoisted to the top, so headers are parsed
# once, at global scope). Templates the files share are then instantiated and compiled
# once instead of once per file: on 2 cores this halves the test build and cuts the
# small examples' build from about 150 s of compiler time to 50 s (docs/design.md §5).
include_guard(GLOBAL)

# outgrow_can_join_unity(<source> <out>): <out> is TRUE unless the file (relative to the
# current source directory) cannot live inside a namespace of a unity translation unit:
# it replaces operator new/delete, specializes or reopens another namespace, or defines
# macros.
function(outgrow_can_join_unity source out)
  file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/${source}" blockers
       REGEX "operator new|operator delete|^namespace (outgrow|std|fmt|Catch|boost)[ :{]|^template ?<>|^#define")
  if(blockers)
    set(${out} FALSE PARENT_SCOPE)
  else()
    set(${out} TRUE PARENT_SCOPE)
  endif()
endfunction()

# outgrow_unity_includes(<out> <source>...): the #include lines of the sources (relative
# to the current source directory), each once, joined by newlines.
# The sources become configure dependencies: a file that gains an #include re-runs
# CMake, which hoists it (else it would land inside the file's namespace).
function(outgrow_unity_includes out)
  set(includes "")
  foreach(source IN LISTS ARGN)
    file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/${source}" lines REGEX "^#include [<\"]")
    list(APPEND includes ${lines})
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                 "${CMAKE_CURRENT_SOURCE_DIR}/${source}")
  endforeach()
  list(REMOVE_DUPLICATES includes)
  list(JOIN includes "\n" text)
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# outgrow_unity_halves(<prefix> <source>...): splits the sources (relative to the current
# source directory) into <prefix>_1 and <prefix>_2 of about equal size in bytes, in
# order, so that two units compile at once on two cores instead of one.
function(outgrow_unity_halves prefix)
  set(part_1 "")
  set(part_2 "")
  set(size_1 0)
  set(size_2 0)
  foreach(source IN LISTS ARGN)
    file(SIZE "${CMAKE_CURRENT_SOURCE_DIR}/${source}" size)
    if(size_1 LESS_EQUAL size_2)
      list(APPEND part_1 ${source})
      math(EXPR size_1 "${size_1} + ${size}")
    else()
      list(APPEND part_2 ${source})
      math(EXPR size_2 "${size_2} + ${size}")
    endif()
  endforeach()
  set(${prefix}_1 "${part_1}" PARENT_SCOPE)
  set(${prefix}_2 "${part_2}" PARENT_SCOPE)
endfunction()

# outgrow_write_if_changed(<path> <text>): rewrites the file only when its text changes,
# so a re-configure does not rebuild what did not change.
function(outgrow_write_if_changed path text)
  set(old "")
  if(EXISTS "${path}")
    file(READ "${path}" old)
  endif()
  if(NOT old STREQUAL text)
    file(WRITE "${path}" "${text}")
  endif()
endfunction()
