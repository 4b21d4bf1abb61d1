# Client library (src/client, installed header include/hato/client.h) and
# the command-line clients hato-pub, hato-sub, hato-rr (tools/).
find_package(OpenSSL 3 REQUIRED)
include(GNUInstallDirs)

file(GLOB HATO_CLIENT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/client/*.c)
add_library(hato_client STATIC ${HATO_CLIENT_SRC})
target_link_libraries(hato_client PUBLIC hato_mqtt OpenSSL::SSL OpenSSL::Crypto)

install(FILES ${CMAKE_SOURCE_DIR}/include/hato/client.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/hato)
