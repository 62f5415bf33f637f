# TetherPackaging.cmake - install rules for find_package(tether CONFIG) and
# the CPack settings for `cpack -G DEB`.  Included from the top-level
# CMakeLists.txt after the targets exist.
#
# Install components (each one .deb package):
#   lib       libtether.so.*                                   -> libtether0
#   dev       headers, libtether.so, libtether.a, tether.pc,
#             CMake package files                              -> libtether-dev
#   tools     the `tether` command                             -> tether-tools
#   examples  calculator-server, calculator-client (only with
#             -DTETHER_INSTALL_EXAMPLES=ON)                     -> tether-examples
include(CMakePackageConfigHelpers)

set(TETHER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tether)
install(EXPORT tetherTargets NAMESPACE tether:: DESTINATION ${TETHER_CMAKE_DIR}
    COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/tetherConfig.cmake.in
    ${CMAKE_BINARY_DIR}/tetherConfig.cmake
    INSTALL_DESTINATION ${TETHER_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same minor matches.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/tetherConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES
    ${CMAKE_BINARY_DIR}/tetherConfig.cmake
    ${CMAKE_BINARY_DIR}/tetherConfigVersion.cmake
    ${CMAKE_CURRENT_LIST_DIR}/TetherProtobufC.cmake
    DESTINATION ${TETHER_CMAKE_DIR} COMPONENT dev)

# ---- CPack: Debian packages, one per component ----------------------------
set(CPACK_PACKAGE_NAME tether)
set(CPACK_PACKAGE_VENDOR tether)
set(CPACK_PACKAGE_CONTACT "tether maintainers" CACHE STRING
    "Maintainer field of the packages made by cpack")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "RPC services that register themselves, stay registered only while alive, and leave cleanly")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_COMPONENTS_ALL lib dev tools)
if(TETHER_INSTALL_EXAMPLES)
    list(APPEND CPACK_COMPONENTS_ALL examples)
endif()
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_COMPONENT_TOOLS_DEPENDS lib)
set(CPACK_COMPONENT_EXAMPLES_DEPENDS lib)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Run-time Depends come from dpkg-shlibdeps (Debian: dpkg-dev; libssl3
# for TLS comes in that way); the
# component dependencies above add "libtether0 (= version)".
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# dpkg-shlibdeps runs in each component's staging directory; the programs
# need libtether.so.0, which it finds in the lib component's.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS
    "../lib${CPACK_PACKAGING_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}")
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libtether0)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_DESCRIPTION "tether RPC library (shared library)")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# Loaded at run time, only when used: libcurl by the etcd:// registry,
# libmicrohttpd by the metrics listener (metrics_addr).
set(CPACK_DEBIAN_LIB_PACKAGE_RECOMMENDS "libcurl4, libmicrohttpd12")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtether-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION "tether RPC library (headers, static library, pkg-config and CMake files)")
# What tether.pc and tetherConfig.cmake look for, and the protoc-c rule.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libprotobuf-c-dev, libjansson-dev, libssl-dev, protobuf-c-compiler, pkg-config")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME tether-tools)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "tether RPC command-line tool (call, list, watch)")
set(CPACK_DEBIAN_EXAMPLES_PACKAGE_NAME tether-examples)
set(CPACK_DEBIAN_EXAMPLES_DESCRIPTION "tether example calculator server and client")

include(CPack)
