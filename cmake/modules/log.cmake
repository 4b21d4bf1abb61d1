# The log module's JSON lines (log_format json) are made with cJSON.
find_library(CJSON_LIB cjson REQUIRED)
target_link_libraries(hato_base PUBLIC ${CJSON_LIB})
