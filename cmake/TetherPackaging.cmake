# TetherPackaging.cmake - install rules for find_package(tether CONFIG).
# Included from the top-level CMakeLists.txt after the targets exist.
#
# Install components:
#   lib       libtether.so.*
#   dev       headers, libtether.so, libtether.a, tether.pc,
#             CMake package files
#   tools     the `tether` command
#   examples  calculator-server, calculator-client (only with
#             -DTETHER_INSTALL_EXAMPLES=ON)
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
