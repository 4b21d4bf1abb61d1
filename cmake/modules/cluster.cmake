# Clustering over NATS (docs/cluster.md): the mapping of MQTT topics to NATS
# subjects and the message envelope (src/cluster/, pure functions), and the
# broker's side (src/broker/cluster.c) linked with libnats when WITH_CLUSTER.
file(GLOB HATO_CLUSTER_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/cluster/*.c)
add_library(hato_cluster STATIC ${HATO_CLUSTER_SRC})
target_link_libraries(hato_broker PUBLIC hato_cluster)
if(WITH_CLUSTER)
  pkg_check_modules(NATS libnats)
  if(NOT NATS_FOUND)
    message(FATAL_ERROR "libnats not found: install libnats-dev (scripts/deps.sh build) "
                        "or configure with -DWITH_CLUSTER=OFF")
  endif()
  target_include_directories(hato_broker PRIVATE ${NATS_INCLUDE_DIRS})
  target_link_libraries(hato_broker PUBLIC ${NATS_LIBRARIES})
endif()
