# kvserve_area(NAME [DIR subdir] [SUBDIRS dirs...] [DEPS targets...])
# Builds src/<DIR>/*.cpp and src/<DIR>/<SUBDIR>/*.cpp into the static library
# kvserve_<NAME>. Files ending in _avx512.cpp / _avx2.cpp are compiled for that ISA only;
# the code chooses between them at run time (see src/core/cpu_features.h), so the binary
# still runs anywhere.
set(KVSERVE_ALL_AREAS "" CACHE INTERNAL "")
function(kvserve_area name)
  cmake_parse_arguments(A "" "DIR" "SUBDIRS;DEPS" ${ARGN})
  if(NOT A_DIR)
    set(A_DIR ${name})
  endif()
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${A_DIR}/*.cpp)
  foreach(sub ${A_SUBDIRS})
    file(GLOB sub_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${A_DIR}/${sub}/*.cpp)
    list(APPEND srcs ${sub_srcs})
  endforeach()
  if(NOT srcs)
    set(srcs ${CMAKE_SOURCE_DIR}/cmake/empty.cpp)
  endif()
  foreach(s ${srcs})
    if(s MATCHES "_avx512\\.cpp$")
      set_source_files_properties(${s} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512bf16;-mfma;-mf16c;-mavx2")
    elseif(s MATCHES "_avx2\\.cpp$")
      set_source_files_properties(${s} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    endif()
  endforeach()
  add_library(kvserve_${name} STATIC ${srcs})
  target_include_directories(kvserve_${name} PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_definitions(kvserve_${name} PUBLIC
    KVSERVE_SHARED_DIR_DEFAULT="${KVSERVE_SHARED_DIR}"
    KVSERVE_MODEL_DIR_DEFAULT="${KVSERVE_MODEL_DIR}")
  if(A_DEPS)
    target_link_libraries(kvserve_${name} PUBLIC ${A_DEPS})
  endif()
  set(KVSERVE_ALL_AREAS ${KVSERVE_ALL_AREAS} kvserve_${name} CACHE INTERNAL "")
endfunction()
