# make install (docs/operations.md): the config, the systemd units and the
# broker's man pages; the programs and their man pages come with each
# module's targets. PREFIX (CMAKE_INSTALL_PREFIX, default /usr/local) and
# DESTDIR are honoured; with PREFIX=/usr the config goes to /etc/hato.
include(GNUInstallDirs)

# Empty: under the prefix (so a new PREFIX moves them too).
set(HATO_SYSTEMD_UNITDIR "" CACHE PATH
    "Where the system unit hato.service is installed (default PREFIX/lib/systemd/system; Debian's package: /lib/systemd/system)")
set(HATO_SYSTEMD_USER_UNITDIR "" CACHE PATH
    "Where the user unit hato.service is installed (default PREFIX/lib/systemd/user)")
set(HATO_UNITDIR "${HATO_SYSTEMD_UNITDIR}")
set(HATO_USER_UNITDIR "${HATO_SYSTEMD_USER_UNITDIR}")
if(NOT HATO_UNITDIR)
  set(HATO_UNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
if(NOT HATO_USER_UNITDIR)
  set(HATO_USER_UNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/user")
endif()
option(HATO_INSTALL_UNITS "Install the systemd units" ON)

# Values the unit templates name.
set(HATO_SBIN "${CMAKE_INSTALL_FULL_SBINDIR}")
set(HATO_CONF "${CMAKE_INSTALL_FULL_SYSCONFDIR}/hato/hato.conf")
if(WITH_SYSTEMD)
  set(HATO_UNIT_TYPE notify)
  set(HATO_WATCHDOG "WatchdogSec=30")
  set(HATO_UNIT_NOTE "Type=notify: hato tells systemd READY=1 once every listener is open.")
else()
  set(HATO_UNIT_TYPE simple)
  set(HATO_WATCHDOG "#WatchdogSec=30 (needs WITH_SYSTEMD)")
  set(HATO_UNIT_NOTE "Type=simple: this hato was built with WITH_SYSTEMD=OFF (no sd_notify).")
endif()
configure_file(${CMAKE_SOURCE_DIR}/packaging/hato.service.in ${CMAKE_BINARY_DIR}/packaging/hato.service
               @ONLY)
configure_file(${CMAKE_SOURCE_DIR}/packaging/hato-user.service.in
               ${CMAKE_BINARY_DIR}/packaging/user/hato.service @ONLY)
if(HATO_INSTALL_UNITS)
  install(FILES ${CMAKE_BINARY_DIR}/packaging/hato.service DESTINATION ${HATO_UNITDIR})
  install(FILES ${CMAKE_BINARY_DIR}/packaging/user/hato.service
          DESTINATION ${HATO_USER_UNITDIR})
endif()

# The commented default config. A build without persistence gets those
# lines commented out, so that the config it installs is one it accepts.
file(READ ${CMAKE_SOURCE_DIR}/packaging/hato.conf HATO_CONF_TEXT)
if(NOT WITH_PERSISTENCE)
  string(REPLACE "\npersistence true\npersistence_location /var/lib/hato/\n"
                 "\n# (this hato was built with WITH_PERSISTENCE=OFF)\n#persistence true\n#persistence_location /var/lib/hato/\n"
                 HATO_CONF_TEXT "${HATO_CONF_TEXT}")
endif()
file(WRITE ${CMAKE_BINARY_DIR}/packaging/hato.conf "${HATO_CONF_TEXT}")
# An existing config is the administrator's and is kept (the new default is
# put beside it as hato.conf.new).
set(HATO_CONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/hato")
install(CODE "
  # file(INSTALL) adds DESTDIR itself; the check needs it spelled out.
  set(name hato.conf)
  if(EXISTS \"\$ENV{DESTDIR}${HATO_CONF_DIR}/hato.conf\")
    message(STATUS \"Keeping: \$ENV{DESTDIR}${HATO_CONF_DIR}/hato.conf (the new default goes beside it as hato.conf.new)\")
    set(name hato.conf.new)
  endif()
  file(INSTALL FILES \"${CMAKE_BINARY_DIR}/packaging/hato.conf\" DESTINATION \"${HATO_CONF_DIR}\"
       RENAME \${name} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
")
