# Durable store (LMDB) and the hato-store tool. WITH_PERSISTENCE=OFF: the
# store's batch code stays (the broker's structures hold it), store_open
# reports "built without persistence", LMDB and cJSON are not needed and
# hato-store is not built.
file(GLOB HATO_STORE_SRC CONFIGURE_DEPENDS src/store/*.c)
list(FILTER HATO_STORE_SRC EXCLUDE REGEX ".*/tool\\.c$")
add_library(hato_store STATIC ${HATO_STORE_SRC})
target_link_libraries(hato_store PUBLIC hato_base hato_mqtt Threads::Threads)
target_link_libraries(hato_broker PUBLIC hato_store)

if(WITH_PERSISTENCE)
  find_library(LMDB_LIB lmdb REQUIRED)
  find_library(CJSON_LIB cjson REQUIRED)
  target_link_libraries(hato_store PUBLIC ${LMDB_LIB})
  if(EXISTS ${CMAKE_SOURCE_DIR}/src/store/tool.c)
    add_executable(hato-store src/store/tool.c)
    target_link_libraries(hato-store PRIVATE hato_config hato_store ${CJSON_LIB})
    install(TARGETS hato-store DESTINATION ${CMAKE_INSTALL_SBINDIR})
    install(FILES packaging/man/hato-store.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
  endif()
endif()
