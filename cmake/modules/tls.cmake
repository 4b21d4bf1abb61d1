# TLS listeners (src/transport/tls.c): OpenSSL 3 from pkg-config, linked into
# the broker library so the workers drive TLS connections themselves.
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl>=3.0)
file(GLOB HATO_TRANSPORT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/transport/*.c)
target_sources(hato_broker PRIVATE ${HATO_TRANSPORT_SRC})
target_link_libraries(hato_broker PUBLIC PkgConfig::OPENSSL)
