# Authentication and authorisation: password file hashes (Mosquitto formats),
# ACL files, and the hato-passwd tool. The broker's use of them lives in
# src/broker/security.c (part of hato_broker).
include(GNUInstallDirs)
find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto)
pkg_check_modules(ARGON2 REQUIRED libargon2)

file(GLOB HATO_AUTH_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/auth/*.c)
add_library(hato_auth STATIC ${HATO_AUTH_SRC})
target_include_directories(hato_auth PRIVATE ${ARGON2_INCLUDE_DIRS})
target_link_libraries(hato_auth PUBLIC hato_base OpenSSL::Crypto ${ARGON2_LIBRARIES})
target_link_libraries(hato_broker PUBLIC hato_auth)

add_executable(hato-passwd ${CMAKE_SOURCE_DIR}/tools/hato-passwd.c)
target_link_libraries(hato-passwd PRIVATE hato_auth)

install(TARGETS hato-passwd DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/man/hato-passwd.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
