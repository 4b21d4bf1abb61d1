# Mosquitto plugins of hato's own for the tests (tests/plugins, used by
# tests/integration/test_plugins.py): built only with the tests and with
# plugin support, into <build>/plugins/.
if(HATO_TESTS AND WITH_PLUGINS)
  foreach(name test_plugin_v5 test_plugin_v4)
    add_library(${name} MODULE ${CMAKE_SOURCE_DIR}/tests/plugins/${name}.c)
  endforeach()
  add_library(test_plugin_broken MODULE ${CMAKE_SOURCE_DIR}/tests/plugins/test_plugin_v5.c)
  target_compile_definitions(test_plugin_broken PRIVATE TEST_PLUGIN_BROKEN=1)
  foreach(v 3 2)
    add_library(test_plugin_v${v} MODULE ${CMAKE_SOURCE_DIR}/tests/plugins/test_plugin_v4.c)
    target_compile_definitions(test_plugin_v${v} PRIVATE TEST_PLUGIN_VERSION=${v})
  endforeach()
  set_target_properties(test_plugin_v5 test_plugin_v4 test_plugin_v3 test_plugin_v2
                        test_plugin_broken PROPERTIES
                        PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugins)
  # Not instrumented in the sanitizer builds: the same files load into
  # Debian's mosquitto, which has no ASan runtime.
  foreach(name test_plugin_v5 test_plugin_v4 test_plugin_v3 test_plugin_v2 test_plugin_broken)
    target_compile_options(${name} PRIVATE -fno-sanitize=all)
    target_link_options(${name} PRIVATE -fno-sanitize=all)
  endforeach()
endif()
