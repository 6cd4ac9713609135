# Driven by tests/install/CMakeLists.txt: cmake -DSTEP=install|cmake|pkgconfig
# -DBUILD_DIR=... -DPREFIX=... -DLIBDIR=... -DWORK_DIR=... -DSOURCE_DIR=...
# -DC_COMPILER=... -DCXX_COMPILER=... [-DPKG_CONFIG=...] -P check_install.cmake

# Runs a command; stops the script (failing the test) unless it exits 0.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

# Runs a consumer program and checks it printed its success line, and that
# it loads libspanmap.so (variant "shared") or has the library linked in.
function(run_consumer program variant)
  run(readelf -d ${program})
  if(variant STREQUAL "shared" AND NOT run_output MATCHES "NEEDED[^\n]*libspanmap[.]so[.]0")
    message(FATAL_ERROR "${program} does not load libspanmap.so.0:\n${run_output}")
  elseif(variant STREQUAL "static" AND run_output MATCHES "libspanmap[.]so")
    message(FATAL_ERROR "${program} loads libspanmap.so, expected the static library:\n${run_output}")
  endif()
  run(${program})
  if(NOT run_output MATCHES "^spanmap consumer ok")
    message(FATAL_ERROR "${program} printed:\n${run_output}")
  endif()
  message(STATUS "${program}: ${run_output}")
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}" "${WORK_DIR}")
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")
  foreach(f include/spanmap/spanmap.h include/spanmap/alloc.h
            ${LIBDIR}/libspanmap.a ${LIBDIR}/libspanmap.so ${LIBDIR}/libspanmap.so.0
            ${LIBDIR}/cmake/spanmap/spanmapConfig.cmake
            ${LIBDIR}/pkgconfig/spanmap.pc ${LIBDIR}/pkgconfig/spanmap-static.pc)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "not installed: ${f}")
    endif()
  endforeach()
  file(READ "${PREFIX}/${LIBDIR}/pkgconfig/spanmap.pc" pc)
  if(NOT pc MATCHES "prefix=${PREFIX}\n")
    message(FATAL_ERROR "spanmap.pc does not name the install prefix ${PREFIX}:\n${pc}")
  endif()

elseif(STEP STREQUAL "cmake")
  set(bin "${WORK_DIR}/cmake")
  file(REMOVE_RECURSE "${bin}")
  run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/consumer" -B "${bin}"
      "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DCMAKE_C_COMPILER=${C_COMPILER}"
      "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" -DCMAKE_BUILD_TYPE=Release)
  run("${CMAKE_COMMAND}" --build "${bin}")
  foreach(variant shared static)
    run_consumer("${bin}/consumer_c_${variant}" ${variant})
    run_consumer("${bin}/consumer_cpp_${variant}" ${variant})
  endforeach()

elseif(STEP STREQUAL "pkgconfig")
  set(bin "${WORK_DIR}/pkgconfig")
  file(REMOVE_RECURSE "${bin}")
  file(MAKE_DIRECTORY "${bin}")
  # Only the installed package may be found, never one elsewhere on the system.
  set(ENV{PKG_CONFIG_LIBDIR} "${PREFIX}/${LIBDIR}/pkgconfig")
  unset(ENV{PKG_CONFIG_PATH})
  # pkg-config gives no run path; a shared spanmap is found through this.
  set(ENV{LD_LIBRARY_PATH} "${PREFIX}/${LIBDIR}")
  # spanmap.pc: the shared library; spanmap-static.pc: the static one.
  foreach(pc spanmap spanmap-static)
    set(variant shared)
    if(pc STREQUAL "spanmap-static")
      set(variant static)
    endif()
    run("${PKG_CONFIG}" --cflags --libs ${pc})
    string(STRIP "${run_output}" flags)
    message(STATUS "pkg-config --cflags --libs ${pc}: ${flags}")
    separate_arguments(flags UNIX_COMMAND "${flags}")
    # As a user writes it: sources first, then the flags pkg-config prints.
    run("${C_COMPILER}" "${SOURCE_DIR}/consumer.c" -o "${bin}/consumer_c_${variant}" ${flags})
    run_consumer("${bin}/consumer_c_${variant}" ${variant})
    run("${CXX_COMPILER}" -std=c++20 "${SOURCE_DIR}/consumer.cpp" -o "${bin}/consumer_cpp_${variant}" ${flags})
    run_consumer("${bin}/consumer_cpp_${variant}" ${variant})
  endforeach()

else()
  message(FATAL_ERROR "unknown STEP '${STEP}'")
endif()
