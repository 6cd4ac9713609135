# The libraries users link, each a bundle of the modules' objects (see
# alloc/CMakeLists.txt for the modules):
#
#   spanmap          libspanmap.a: core, pmr, profile, stats
#   spanmap_shared   libspanmap.so: the same objects
#   spanmap_malloc   libspanmap_malloc.so, the malloc replacement: the _nx
#                    variants of core, profile and stats, and the entry points
#
# Installed, libspanmap.so is spanmap::spanmap and libspanmap.a
# spanmap::spanmap_static; in this build tree the tests link the static
# library (target spanmap).
set(_spanmap_bundle_objects
  $<TARGET_OBJECTS:spanmap_core> $<TARGET_OBJECTS:spanmap_pmr>
  $<TARGET_OBJECTS:spanmap_profile> $<TARGET_OBJECTS:spanmap_stats>)
set(_spanmap_public_includes
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/alloc/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/stats/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/map/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

add_library(spanmap STATIC ${_spanmap_bundle_objects})
add_library(spanmap::spanmap ALIAS spanmap)
add_library(spanmap::spanmap_static ALIAS spanmap)
set_target_properties(spanmap PROPERTIES EXPORT_NAME spanmap_static)
target_include_directories(spanmap PUBLIC ${_spanmap_public_includes})
target_link_libraries(spanmap PUBLIC Threads::Threads)
# Nothing in the allocator refers up to the profiler or the statistics, so a
# static link would leave their objects out, and with them the reports at exit
# that SPANMAP_CONF asks for (stats_print, prof): each module defines an
# anchor symbol, and the static library's users are made to keep it.
target_link_options(spanmap INTERFACE "LINKER:-u,spanmap_stats_module" "LINKER:-u,spanmap_profile_module")

add_library(spanmap_shared SHARED ${_spanmap_bundle_objects})
add_library(spanmap::spanmap_shared ALIAS spanmap_shared)
set_target_properties(spanmap_shared PROPERTIES
  OUTPUT_NAME spanmap
  EXPORT_NAME spanmap
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR})
target_include_directories(spanmap_shared PUBLIC ${_spanmap_public_includes})
target_link_libraries(spanmap_shared PUBLIC Threads::Threads)

# They are built where they always were, beside the allocator's objects
# (build/alloc/libspanmap_malloc.so is the path the README gives).
foreach(t spanmap spanmap_shared)
  set_target_properties(${t} PROPERTIES
    ARCHIVE_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/alloc LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/alloc)
endforeach()

if(SPANMAP_HAVE_LIBUNWIND)
  # libunwind.so also defines the C++ exception ABI (_Unwind_RaiseException
  # and the rest) and glibc's backtrace(); libgcc_s is named first so that the
  # process keeps GCC's unwinder for exceptions.
  foreach(t spanmap spanmap_shared)
    target_link_directories(${t} PUBLIC $<BUILD_INTERFACE:${LIBUNWIND_LIBRARY_DIRS}>)
  endforeach()
  target_link_libraries(spanmap PUBLIC $<LINK_ONLY:gcc_s> $<LINK_ONLY:${LIBUNWIND_LIBRARIES}>)
  target_link_libraries(spanmap_shared PRIVATE gcc_s ${LIBUNWIND_LIBRARIES})
endif()

# The malloc replacement (LD_PRELOAD, or linked ahead of the C library).
# Preloading it must cost a program nothing but its malloc, so it needs the C
# library alone: it is made of the _nx objects (no exceptions, no RTTI) and
# linked with the C driver (no libstdc++) and a private libgcc. What C++
# runtime its failure paths need (std::bad_alloc, the new_handler) is the
# program's own, found by name when an allocation fails (malloc_override.cpp);
# libunwind is opened when profiling starts (alloc/profile/capture.cpp). The
# pmr resource stays out (alloc/CMakeLists.txt says why). Its version
# script exports only the allocation entry points.
if(SPANMAP_SANITIZE STREQUAL "")
  add_library(spanmap_malloc SHARED alloc/src/malloc_override.cpp
    $<TARGET_OBJECTS:spanmap_core_nx> $<TARGET_OBJECTS:spanmap_profile_nx> $<TARGET_OBJECTS:spanmap_stats_nx>)
  add_library(spanmap::malloc ALIAS spanmap_malloc)
  target_include_directories(spanmap_malloc
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/alloc/include>
           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    # The entry points inline the fast paths from the allocator's own headers.
    PRIVATE ${PROJECT_SOURCE_DIR}/alloc/src ${PROJECT_SOURCE_DIR}/alloc/module)
  target_compile_options(spanmap_malloc PRIVATE
    -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-free -fno-semantic-interposition
    -fno-exceptions -fno-rtti)
  target_link_libraries(spanmap_malloc PRIVATE spanmap_warnings)
  # CMake still appends the C++ compiler's implicit libraries (-lstdc++ -lm)
  # for the C++ sources; --as-needed drops them, as nothing refers to them.
  target_link_options(spanmap_malloc PRIVATE -static-libgcc -Wl,--as-needed
    -Wl,--version-script=${PROJECT_SOURCE_DIR}/alloc/src/malloc_override.map -Wl,--no-undefined)
  set_target_properties(spanmap_malloc PROPERTIES
    LINKER_LANGUAGE C
    LINK_DEPENDS ${PROJECT_SOURCE_DIR}/alloc/src/malloc_override.map
    EXPORT_NAME malloc
    LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/alloc)
  install(TARGETS spanmap_malloc EXPORT spanmapTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
