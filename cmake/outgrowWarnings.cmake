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
elseif(MSVC)
  target_compile_options(outgrow_warnings INTERFACE /W4 /permissive-)
  if(OUTGROW_WARNINGS_AS_ERRORS)
    target_compile_options(outgrow_warnings INTERFACE /WX)
  endif()
endif()
