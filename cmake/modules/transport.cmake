# Byte streams under MQTT (src/transport/): the socket, PROXY header, TLS
# (OpenSSL 3) and WebSocket (wslay) layers, one library shared by the broker
# and the client library. It links nothing of theirs.
# WITH_TLS=OFF: tls_off.c replaces tls.c, libssl is not linked and every
# TLS set-up reports "built without TLS"; libcrypto stays (WebSocket
# handshake digest, password hashes). WITH_WEBSOCKETS=OFF: ws_off.c
# replaces ws.c and wslay is not needed.
if(WITH_TLS)
  pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl>=3.0)
  set(HATO_TRANSPORT_SSL PkgConfig::OPENSSL)
else()
  pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET libcrypto>=3.0)
  set(HATO_TRANSPORT_SSL PkgConfig::OPENSSL)
endif()
file(GLOB HATO_TRANSPORT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/transport/*.c)
# tls_off.c / ws_off.c stand in for tls.c / ws.c when that part is left out.
foreach(part tls ws)
  if((part STREQUAL "tls" AND WITH_TLS) OR (part STREQUAL "ws" AND WITH_WEBSOCKETS))
    list(FILTER HATO_TRANSPORT_SRC EXCLUDE REGEX ".*/${part}_off\\.c$")
  else()
    list(FILTER HATO_TRANSPORT_SRC EXCLUDE REGEX ".*/${part}\\.c$")
  endif()
endforeach()
add_library(hato_transport STATIC ${HATO_TRANSPORT_SRC})
target_link_libraries(hato_transport PUBLIC ${HATO_TRANSPORT_SSL})
if(WITH_WEBSOCKETS)
  # Debian ships no .pc file for wslay, only the header and library.
  find_path(WSLAY_INCLUDE wslay/wslay.h REQUIRED)
  find_library(WSLAY_LIB wslay REQUIRED)
  target_link_libraries(hato_transport PUBLIC ${WSLAY_LIB})
  target_include_directories(hato_transport PRIVATE ${WSLAY_INCLUDE})
endif()
target_link_libraries(hato_broker PUBLIC hato_transport)
