# hato-bench, the load generator (issue 6), on the client library from
# client.cmake (fragments are included in name order: this one comes later).
add_executable(hato-bench ${CMAKE_SOURCE_DIR}/tools/hato-bench.c)
target_link_libraries(hato-bench PRIVATE hato_client)
install(TARGETS hato-bench DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/man/hato-bench.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
