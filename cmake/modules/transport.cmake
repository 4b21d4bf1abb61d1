# Byte streams under MQTT (src/transport/): the socket, PROXY header, TLS
# (OpenSSL 3) and WebSocket (wslay) layers, one library shared by the broker
# and the client library. It links nothing of theirs.
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl>=3.0)
# Debian ships no .pc file for wslay, only the header and library.
find_path(WSLAY_INCLUDE wslay/wslay.h REQUIRED)
find_library(WSLAY_LIB wslay REQUIRED)
file(GLOB HATO_TRANSPORT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/transport/*.c)
add_library(hato_transport STATIC ${HATO_TRANSPORT_SRC})
target_link_libraries(hato_transport PUBLIC PkgConfig::OPENSSL ${WSLAY_LIB})
target_include_directories(hato_transport PRIVATE ${WSLAY_INCLUDE})
target_link_libraries(hato_broker PUBLIC hato_transport)
