# Warning flags for outgrow's own tests, benchmarks and examples. Never imposed on users:
# the exported outgrow::outgrow target carries no warning flags.
include_guard(GLOBAL)

add_library(outgrow_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(outgrow_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual)
  if(OUTGROW_WARNINGS_AS_ERRORS)
    target_compile_options(outgrow_warnings INTERFACE -Werror)
  endif()
  # Not a warning flag, but only for our own builds too: GCC collects its garbage from a
  # heap of 512 MB and when the heap has tripled, not from 128 MB and at +30 % (its
  # defaults for a machine with this much memory). The unity test files compile 18 %
  # faster (44 s -> 36 s, routing tests, -g1) for a peak of 1.7 GB instead of 1.3 GB.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(outgrow_warnings INTERFACE
      --param=ggc-min-expand=200 --param=ggc-min-heapsize=524288)
  endif()
  # Clang stamps a precompiled header with its build time unless told not to; ccache
  # cannot cache the compiles that use a stamped one.
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(outgrow_warnings INTERFACE "SHELL:-Xclang -fno-pch-timestamp")
  endif()
elseif(MSVC)
  target_compile_options(outgrow_warnings INTERFACE /W4 /permissive-)
  if(OUTGROW_WARNINGS_AS_ERRORS)
    target_compile_options(outgrow_warnings INTERFACE /WX)
  endif()
endif()
