# Clustering over NATS (docs/cluster.md). So far the mapping of MQTT topics
# and filters to NATS subjects (src/cluster/subject.c): pure functions, no
# NATS library needed yet.
file(GLOB HATO_CLUSTER_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/cluster/*.c)
add_library(hato_cluster STATIC ${HATO_CLUSTER_SRC})
target_link_libraries(hato_broker PUBLIC hato_cluster)
