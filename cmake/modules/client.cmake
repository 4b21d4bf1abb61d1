# Client library (src/client, installed header include/hato/client.h) and
# the command-line clients hato-pub, hato-sub, hato-rr (tools/).
include(GNUInstallDirs)

file(GLOB HATO_CLIENT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/client/*.c)
add_library(hato_client STATIC ${HATO_CLIENT_SRC})
# TLS comes through hato_transport (libssl only when WITH_TLS is on).
target_link_libraries(hato_client PUBLIC hato_mqtt hato_transport)

install(FILES ${CMAKE_SOURCE_DIR}/include/hato/client.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/hato)

# Command-line clients: thin mains over the library and the shared options.
pkg_check_modules(CJSON REQUIRED libcjson)
add_library(hato_cli STATIC ${CMAKE_SOURCE_DIR}/tools/cliopts.c ${CMAKE_SOURCE_DIR}/tools/format.c)
target_compile_definitions(hato_cli PRIVATE HATO_VERSION="${PROJECT_VERSION}")
target_include_directories(hato_cli PRIVATE ${CJSON_INCLUDE_DIRS})
target_link_libraries(hato_cli PUBLIC hato_client ${CJSON_LIBRARIES})
foreach(tool hato-pub hato-sub hato-rr)
  add_executable(${tool} ${CMAKE_SOURCE_DIR}/tools/${tool}.c)
  target_link_libraries(${tool} PRIVATE hato_cli)
  install(TARGETS ${tool} DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${CMAKE_SOURCE_DIR}/packaging/man/${tool}.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endforeach()

# The library's unit test (tests/unit/client/, outside the tests/unit/test_*.c
# glob because it links the client library, not the broker).
# HATO_TESTS is OFF here when cmocka is missing (CMakeLists.txt), so a
# configure without cmocka never needs CMOCKA_LIB. It checks TLS set-up
# errors, so a WITH_TLS=OFF build leaves it out.
if(HATO_TESTS AND CMOCKA_LIB AND WITH_TLS)
  add_executable(test_client ${CMAKE_SOURCE_DIR}/tests/unit/client/test_client.c)
  target_link_libraries(test_client PRIVATE hato_client ${CMOCKA_LIB})
  add_test(NAME unit.test_client COMMAND test_client)
endif()
# Many clients in one thread against a real broker; run by
# tests/integration/test_cli_library.py (not installed).
add_executable(multi_clients ${CMAKE_SOURCE_DIR}/tests/unit/client/multi_clients.c)
target_link_libraries(multi_clients PRIVATE hato_client)
# hc_config.manual_ack driven from stdin; run by
# tests/integration/test_client_manual_ack.py (not installed).
add_executable(manual_ack ${CMAKE_SOURCE_DIR}/tests/unit/client/manual_ack.c)
target_link_libraries(manual_ack PRIVATE hato_client)

# The library for programs outside the tree: link -lhato_client -lhato_mqtt -lssl -lcrypto.
install(TARGETS hato_client hato_mqtt ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
target_link_libraries(hato_broker PUBLIC hato_client) # the bridge engine (src/broker/bridge.c) drives its connections with it
