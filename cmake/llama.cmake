# cmake/llama.cmake: the pinned llama.cpp that scripts/setup-deps.sh built.
#
# Included by the top-level CMakeLists.txt. Reads the cache variable
#   MEDQUANT_LLAMA_PREFIX   install prefix (default: the one scripts/env.sh names,
#                           $MEDQUANT_CACHE or ~/.cache/medquant, /llama.cpp-<version>)
# and defines
#   medquant::llama          libllama            (llama.h; links medquant::ggml)
#   medquant::ggml           libggml, libggml-base, libggml-cpu (ggml*.h, gguf.h)
#   medquant::mtmd           libmtmd             (mtmd.h, mtmd-helper.h; links medquant::llama)
#   medquant::ggml-internal  medquant::ggml plus ggml's private ggml-quants.h and
#                            ggml-common.h (block structs, quantize_row_*_ref,
#                            dequantize_row_*): the oracle for bit-exact tests.
#                            Include as <ggml-quants.h>.
# and the variables (absolute paths)
#   MEDQUANT_LLAMA_QUANTIZE, MEDQUANT_LLAMA_PERPLEXITY, MEDQUANT_LLAMA_IMATRIX,
#   MEDQUANT_LLAMA_MTMD_CLI, MEDQUANT_LLAMA_CLI (= llama-completion: in this
#   llama.cpp, llama-cli is a chat client built on the server, not built here),
#   MEDQUANT_LLAMA_TOKENIZE, MEDQUANT_LLAMA_GGUF,
#   MEDQUANT_LLAMA_CONVERT_HF  (share/llama.cpp/convert_hf_to_gguf.py; needs torch,
#                               transformers, and runs with its own gguf-py/),
#   MEDQUANT_LLAMA_GGUF_PY     (share/llama.cpp/gguf-py, for PYTHONPATH)
#   MEDQUANT_LLAMA_VERSION_STRING  e.g. "0.3.36-b11312" (llama-cpp-python - llama.cpp build)
#   MEDQUANT_LLAMA_COMMIT, MEDQUANT_LLAMA_BUILD_NUMBER
# Binaries linking these run from the build tree: the prefix's lib/ goes into
# their build RPATH (and install RPATH, via CMAKE_INSTALL_RPATH_USE_LINK_PATH).
# The imported include directories are SYSTEM: llama.cpp's headers raise no
# warnings in our -Werror builds.

include_guard(GLOBAL)

# The default prefix follows scripts/env.sh, the single place for the pin.
set(_mq_default_prefix "")
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../scripts/env.sh" _mq_env
     REGEX "^MEDQUANT_LLAMA_CPP_(PY_VERSION|BUILD)=")
foreach(_mq_line IN LISTS _mq_env)
  if(_mq_line MATCHES "^MEDQUANT_LLAMA_CPP_PY_VERSION=([^ #]+)")
    set(_mq_py_version "${CMAKE_MATCH_1}")
  elseif(_mq_line MATCHES "^MEDQUANT_LLAMA_CPP_BUILD=([^ #]+)")
    set(_mq_build "${CMAKE_MATCH_1}")
  endif()
endforeach()
if(DEFINED ENV{MEDQUANT_LLAMA_PREFIX} AND NOT "$ENV{MEDQUANT_LLAMA_PREFIX}" STREQUAL "")
  set(_mq_default_prefix "$ENV{MEDQUANT_LLAMA_PREFIX}")
elseif(_mq_py_version AND _mq_build)
  if(DEFINED ENV{MEDQUANT_CACHE} AND NOT "$ENV{MEDQUANT_CACHE}" STREQUAL "")
    set(_mq_cache "$ENV{MEDQUANT_CACHE}")
  else()
    set(_mq_cache "$ENV{HOME}/.cache/medquant")
  endif()
  set(_mq_default_prefix "${_mq_cache}/llama.cpp-${_mq_py_version}-b${_mq_build}")
endif()

set(MEDQUANT_LLAMA_PREFIX "${_mq_default_prefix}" CACHE PATH
    "llama.cpp install prefix made by scripts/setup-deps.sh")
if(MEDQUANT_LLAMA_PREFIX STREQUAL "")   # e.g. a preset's "$env{MEDQUANT_LLAMA_PREFIX}" when unset
  set_property(CACHE MEDQUANT_LLAMA_PREFIX PROPERTY VALUE "${_mq_default_prefix}")
  set(MEDQUANT_LLAMA_PREFIX "${_mq_default_prefix}")
endif()

set(_mq_p "${MEDQUANT_LLAMA_PREFIX}")
set(_mq_stamp "${_mq_p}/.medquant-stamp")
if(_mq_p STREQUAL "" OR NOT EXISTS "${_mq_stamp}")
  message(FATAL_ERROR
    "llama.cpp not found at MEDQUANT_LLAMA_PREFIX='${_mq_p}' (no .medquant-stamp there).\n"
    "Run scripts/setup-deps.sh (10-30 minutes the first time), then configure again; "
    "or pass -DMEDQUANT_LLAMA_PREFIX=<prefix>, e.g. the value of MEDQUANT_LLAMA_PREFIX "
    "after `source scripts/env.sh`.")
endif()
if(_mq_py_version AND _mq_build AND NOT _mq_p MATCHES "llama\\.cpp-${_mq_py_version}-b${_mq_build}$")
  message(WARNING "MEDQUANT_LLAMA_PREFIX='${_mq_p}' is not the version pinned in "
                  "scripts/env.sh (${_mq_py_version}-b${_mq_build}).")
endif()
# A new build by setup-deps.sh rewrites the stamp: configure again then.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_mq_stamp}")

file(STRINGS "${_mq_stamp}" _mq_stamp_lines)
set(MEDQUANT_LLAMA_COMMIT "unknown")
set(MEDQUANT_LLAMA_BUILD_NUMBER 0)
set(_mq_stamp_py "unknown")
foreach(_mq_line IN LISTS _mq_stamp_lines)
  if(_mq_line MATCHES "^llama-cpp-python ([^ ]+)")
    set(_mq_stamp_py "${CMAKE_MATCH_1}")
  elseif(_mq_line MATCHES "^llama\\.cpp b([0-9]+) ([0-9a-f]+)")
    set(MEDQUANT_LLAMA_BUILD_NUMBER "${CMAKE_MATCH_1}")
    set(MEDQUANT_LLAMA_COMMIT "${CMAKE_MATCH_2}")
  endif()
endforeach()
set(MEDQUANT_LLAMA_VERSION_STRING "${_mq_stamp_py}-b${MEDQUANT_LLAMA_BUILD_NUMBER}")

# ---- libraries

function(_medquant_import_lib target file)
  set(_path "${_mq_p}/lib/${file}")
  if(NOT EXISTS "${_path}")
    message(FATAL_ERROR "${_path} is missing: run scripts/setup-deps.sh again "
                        "(or delete ${_mq_p} and run it).")
  endif()
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${_path}"
    INTERFACE_INCLUDE_DIRECTORIES "${_mq_p}/include"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_mq_p}/include")
endfunction()

if(NOT TARGET medquant::llama)
  _medquant_import_lib(medquant::ggml-base libggml-base.so)
  _medquant_import_lib(medquant::ggml-cpu  libggml-cpu.so)
  _medquant_import_lib(medquant::ggml-core libggml.so)
  _medquant_import_lib(medquant::llama     libllama.so)
  _medquant_import_lib(medquant::mtmd      libmtmd.so)

  # ggml-cpu.so links OpenMP (libgomp) itself; ggml's headers need only the
  # definitions of a shared-library client.
  add_library(medquant::ggml INTERFACE IMPORTED GLOBAL)
  set_target_properties(medquant::ggml PROPERTIES
    INTERFACE_LINK_LIBRARIES "medquant::ggml-core;medquant::ggml-cpu;medquant::ggml-base"
    INTERFACE_COMPILE_DEFINITIONS "GGML_SHARED;LLAMA_SHARED")
  set_property(TARGET medquant::llama PROPERTY INTERFACE_LINK_LIBRARIES medquant::ggml)
  set_property(TARGET medquant::mtmd  PROPERTY INTERFACE_LINK_LIBRARIES medquant::llama)

  add_library(medquant::ggml-internal INTERFACE IMPORTED GLOBAL)
  set_target_properties(medquant::ggml-internal PROPERTIES
    INTERFACE_LINK_LIBRARIES medquant::ggml
    INTERFACE_INCLUDE_DIRECTORIES "${_mq_p}/include/ggml-internal"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_mq_p}/include/ggml-internal")
endif()

# Run from the build tree (CMake adds the link directories of imported shared
# libraries by default; say so explicitly) and after `cmake --install`.
list(APPEND CMAKE_BUILD_RPATH "${_mq_p}/lib")
list(REMOVE_DUPLICATES CMAKE_BUILD_RPATH)
if(NOT DEFINED CMAKE_INSTALL_RPATH_USE_LINK_PATH)
  set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
endif()

# ---- tools

function(_medquant_tool var file)
  set(_path "${_mq_p}/${file}")
  if(NOT EXISTS "${_path}")
    message(FATAL_ERROR "${_path} is missing: run scripts/setup-deps.sh again "
                        "(or delete ${_mq_p} and run it).")
  endif()
  set(${var} "${_path}" PARENT_SCOPE)
endfunction()

_medquant_tool(MEDQUANT_LLAMA_QUANTIZE   bin/llama-quantize)
_medquant_tool(MEDQUANT_LLAMA_PERPLEXITY bin/llama-perplexity)
_medquant_tool(MEDQUANT_LLAMA_IMATRIX    bin/llama-imatrix)
_medquant_tool(MEDQUANT_LLAMA_MTMD_CLI   bin/llama-mtmd-cli)
_medquant_tool(MEDQUANT_LLAMA_CLI        bin/llama-completion)
_medquant_tool(MEDQUANT_LLAMA_TOKENIZE   bin/llama-tokenize)
_medquant_tool(MEDQUANT_LLAMA_GGUF       bin/llama-gguf)
_medquant_tool(MEDQUANT_LLAMA_CONVERT_HF share/llama.cpp/convert_hf_to_gguf.py)
_medquant_tool(MEDQUANT_LLAMA_GGUF_PY    share/llama.cpp/gguf-py)

message(STATUS "llama.cpp ${MEDQUANT_LLAMA_VERSION_STRING} (commit ${MEDQUANT_LLAMA_COMMIT}): ${_mq_p}")
