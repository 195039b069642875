# Writes the package files of an install with CMake's own tools (run by scripts/install.sh
# in script mode, after the libraries and headers are in place):
#   <libdir>/pkgconfig/tinybrain.pc, tinybrain-static.pc      (configure_file)
#   <libdir>/cmake/tinybrain/tinybrainConfig.cmake            (configure_package_config_file)
#   <libdir>/cmake/tinybrain/tinybrainConfigVersion.cmake     (write_basic_package_version_file)
#
#   cmake -DPREFIX=/usr/local -DDESTDIR= -DLIBDIR=lib -DVERSION=0.1.0 -DDESCRIPTION="..." \
#         -DSONAME=libtinybrain.so.0.1 -DSHARED_FILE=libtinybrain.so.0.1.0 \
#         -DNATIVE_STATIC_LIBS="-lgcc_s -lm ..." -DSIZEOF_VOID_P=8 -P write-package-files.cmake
#
# PREFIX is where the package will live; the files are written under DESTDIR+PREFIX.
cmake_minimum_required(VERSION 3.16)
include(CMakePackageConfigHelpers)

foreach(var PREFIX LIBDIR VERSION DESCRIPTION SONAME SHARED_FILE NATIVE_STATIC_LIBS SIZEOF_VOID_P)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "write-package-files.cmake: -D${var}=... is required")
  endif()
endforeach()
set(root "${DESTDIR}${PREFIX}")

# pkg-config: @PREFIX@, @LIBDIR@, @VERSION@, @DESCRIPTION@, @NATIVE_STATIC_LIBS@.
foreach(pc tinybrain tinybrain-static)
  configure_file("${CMAKE_CURRENT_LIST_DIR}/${pc}.pc.in" "${root}/${LIBDIR}/pkgconfig/${pc}.pc" @ONLY)
endforeach()

# CMake: the imported targets, with paths relative to the config file.
set(TINYBRAIN_VERSION "${VERSION}")
string(REGEX MATCH "^[0-9]+\\.[0-9]+" TINYBRAIN_VERSION_MAJOR_MINOR "${VERSION}")
set(TINYBRAIN_SONAME "${SONAME}")
set(TINYBRAIN_SHARED_FILE "${SHARED_FILE}")
set(TINYBRAIN_NATIVE_STATIC_LIBS_TEXT "${NATIVE_STATIC_LIBS}")
separate_arguments(TINYBRAIN_NATIVE_STATIC_LIBS UNIX_COMMAND "${NATIVE_STATIC_LIBS}")
set(INCLUDE_INSTALL_DIR include)
set(LIB_INSTALL_DIR "${LIBDIR}")
set(config_dir "${LIBDIR}/cmake/tinybrain")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/tinybrainConfig.cmake.in"
  "${root}/${config_dir}/tinybrainConfig.cmake"
  INSTALL_DESTINATION "${config_dir}"
  INSTALL_PREFIX "${PREFIX}"
  PATH_VARS INCLUDE_INSTALL_DIR LIB_INSTALL_DIR)

# While the major version is 0, a minor release may break the ABI (the soname carries
# the minor number too): 0.1.x satisfies find_package(tinybrain 0.1), never 0.2.
# From 1.0 on, the usual rule: same major version.
if(VERSION VERSION_LESS 1)
  set(compatibility SameMinorVersion)
else()
  set(compatibility SameMajorVersion)
endif()
set(CMAKE_SIZEOF_VOID_P "${SIZEOF_VOID_P}") # checked against the consumer's pointer size
write_basic_package_version_file(
  "${root}/${config_dir}/tinybrainConfigVersion.cmake"
  VERSION "${VERSION}"
  COMPATIBILITY ${compatibility})
