# The config reader (src/config/): mosquitto.conf syntax, its table of
# directives, and what the build's WITH_* options left out (features.c).
# Shared by the broker and the tools (hato-store reads persistence_location
# from it); it depends on nothing of the broker.
file(GLOB HATO_CONFIG_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/config/*.c)
add_library(hato_config STATIC ${HATO_CONFIG_SRC})
target_link_libraries(hato_config PUBLIC hato_base)
target_link_libraries(hato_broker PUBLIC hato_config)
