/*
 * What this build of hato contains: the CMake options WITH_TLS,
 * WITH_TLS_PSK, WITH_EC, WITH_WEBSOCKETS, WITH_SYSTEMD, WITH_PERSISTENCE
 * (docs/building.md), seen by the config reader and `hato -h`.
 */
#ifndef HATO_CONFIG_FEATURES_H
#define HATO_CONFIG_FEATURES_H

/* NULL when this build can honour `name value`; otherwise why not, e.g.
 * "hato was built without TLS (WITH_TLS=OFF)". The config reader puts
 * file:line and the directive in front. */
const char *hato_feature_missing(const char *name, const char *value);

/* The parts built in, e.g. "TLS TLS-PSK EC WebSockets systemd persistence". */
const char *hato_features(void);

#endif
