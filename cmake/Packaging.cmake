# Install layout and Debian package (cpack -G DEB): owned by packaging work.
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
#   cmake --build build -j2
#   cmake --install build --prefix /usr          # the layout below, onto this machine
#   (cd build && cpack -G DEB)                    # build/pvgate_<version>_<arch>.deb
#
# Layout (prefix /usr, which the package uses):
#   /usr/sbin/pvgate
#   /etc/pvgate/pvgate.yaml                       conffile; root:pvgate 0640 after postinst
#   /etc/pvgate/token-key.pem                     made by postinst if missing (P-256), root:pvgate 0640
#   /etc/pvgate/altcha.key                        made by postinst if missing (32 bytes hex), root:pvgate 0640
#   /lib/systemd/system/pvgate.socket             socket activation (enabled by postinst once
#                                                 pvgate.yaml passes --check-config)
#   /lib/systemd/system/pvgate.service
#   /lib/systemd/system/pvgate-spawn-fcgi.service the spawn-fcgi + multiwatch alternative
#   /usr/share/pvgate/nginx/pvgate-upstream.conf  nginx `upstream pvgate` (http block)
#   /usr/share/pvgate/nginx/pvgate.conf           nginx locations (server block)
#   /usr/share/pvgate/nginx/examples/two-merchants.conf  two server blocks, two merchants
#   /usr/share/man/man8/pvgate.8.gz
#   /usr/share/doc/pvgate/{README.md,examples/pvgate.yaml,copyright,changelog.gz}
#
# The nginx files are NOT installed into /etc/nginx: Debian's nginx.conf includes every
# /etc/nginx/conf.d/*.conf, so installing pvgate would change the running web server's
# configuration at its next reload (and break `nginx -t` with "duplicate upstream" on a host
# that already set pvgate up by hand from the README), and the location snippet names a
# merchant the operator has to choose anyway. pvgate(8) gives the two commands that enable them.
#
# With any other prefix everything goes below it (PREFIX/etc/pvgate, PREFIX/lib/systemd/system)
# and the installed units name PREFIX/sbin/pvgate and that config path. Those paths are worked
# out when installing (cpack installs with prefix /usr whatever the build's prefix is).
include(GNUInstallDirs)

set(PVGATE_PKG_DIR ${CMAKE_CURRENT_LIST_DIR}/../packaging)
get_filename_component(PVGATE_PKG_DIR "${PVGATE_PKG_DIR}" ABSOLUTE)
set(PVGATE_PKG_OUT ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${PVGATE_PKG_OUT})

# The Maintainer field, the changelog's signature and debian/copyright's Upstream-Contact.
set(PVGATE_DEB_MAINTAINER "pvgate maintainers <maintainers@pvgate.org>"
    CACHE STRING "Maintainer field of the Debian package")
# A build directory configured before the placeholder was replaced keeps its cached value:
# replace that one value (and only it), so no package is built with it again.
if(PVGATE_DEB_MAINTAINER MATCHES "@users\\.noreply\\.r-seed-[0-9a-f]+\\.example>$")
  set(PVGATE_DEB_MAINTAINER "pvgate maintainers <maintainers@pvgate.org>"
      CACHE STRING "Maintainer field of the Debian package" FORCE)
endif()
set(PVGATE_HOMEPAGE "https://pvgate.org/" CACHE STRING "Homepage field of the Debian package")
set(PVGATE_SYSTEMD_UNITDIR "" CACHE PATH
    "Where the systemd units go (empty: /lib/systemd/system for prefix /usr, else PREFIX/lib/systemd/system)")

# -- binary -------------------------------------------------------------------------------------
install(TARGETS pvgate RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
# A stripped install (cpack's CPACK_STRIP_FILES, `cmake --install --strip`) also drops the
# .comment section (the compilers' version strings), as Debian's dh_strip does (lintian:
# binary-has-unneeded-section).
if(CMAKE_OBJCOPY)
  install(CODE "
    if(CMAKE_INSTALL_DO_STRIP)
      execute_process(COMMAND \"${CMAKE_OBJCOPY}\" --remove-section=.comment
                      \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}/pvgate\"
                      RESULT_VARIABLE _rc)
      if(NOT _rc EQUAL 0)
        message(FATAL_ERROR \"objcopy --remove-section=.comment failed\")
      endif()
    endif()
  ")
endif()

# -- paths that depend on the prefix at install time --------------------------------------------
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(_pvgate_confdir /etc/pvgate)
    set(_pvgate_unitdir /lib/systemd/system)   # Debian bookworm's systemdsystemunitdir
  else()
    set(_pvgate_confdir \"\${CMAKE_INSTALL_PREFIX}/etc/pvgate\")
    set(_pvgate_unitdir \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  endif()
  if(NOT \"${PVGATE_SYSTEMD_UNITDIR}\" STREQUAL \"\")
    set(_pvgate_unitdir \"${PVGATE_SYSTEMD_UNITDIR}\")
  endif()
")

# -- configuration: /etc/pvgate (0750) and pvgate.yaml (0640) -----------------------------------
# A plain `cmake --install` never overwrites a changed pvgate.yaml that is already there (it
# installs pvgate.yaml.dist beside it); in the package, dpkg's conffile handling does that.
install(CODE "
  set(_dir \"\$ENV{DESTDIR}\${_pvgate_confdir}\")
  file(MAKE_DIRECTORY \"\${_dir}\")
  file(CHMOD \"\${_dir}\" DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
       GROUP_READ GROUP_EXECUTE)
  set(_name pvgate.yaml)
  if(EXISTS \"\${_dir}/pvgate.yaml\")
    file(READ \"\${_dir}/pvgate.yaml\" _old)
    file(READ \"${PROJECT_SOURCE_DIR}/conf/pvgate.yaml\" _new)
    if(NOT _old STREQUAL _new)
      set(_name pvgate.yaml.dist)
      message(STATUS \"Keeping \${_dir}/pvgate.yaml (changed); new default as pvgate.yaml.dist\")
    endif()
  endif()
  # file(INSTALL) prepends DESTDIR itself.
  file(INSTALL \"${PROJECT_SOURCE_DIR}/conf/pvgate.yaml\" DESTINATION \"\${_pvgate_confdir}\"
       RENAME \${_name} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
")

# -- systemd units ------------------------------------------------------------------------------
# The files in packaging/systemd name /usr/sbin/pvgate and /etc/pvgate/ (so that
# `systemd-analyze verify` works on them as they are); other prefixes get their own paths.
foreach(unit pvgate.socket pvgate.service pvgate-spawn-fcgi.service)
  install(CODE "
    file(READ \"${PVGATE_PKG_DIR}/systemd/${unit}\" _text)
    string(REPLACE \"/usr/sbin/pvgate\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}/pvgate\"
           _text \"\${_text}\")
    string(REPLACE \"/etc/pvgate/\" \"\${_pvgate_confdir}/\" _text \"\${_text}\")
    file(WRITE \"${PVGATE_PKG_OUT}/systemd/${unit}\" \"\${_text}\")
    file(INSTALL \"${PVGATE_PKG_OUT}/systemd/${unit}\"
         DESTINATION \"\${_pvgate_unitdir}\"
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  ")
endforeach()

# -- nginx examples -----------------------------------------------------------------------------
install(FILES ${PROJECT_SOURCE_DIR}/nginx/pvgate.conf ${PROJECT_SOURCE_DIR}/nginx/pvgate-upstream.conf
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pvgate/nginx)
install(FILES ${PROJECT_SOURCE_DIR}/nginx/examples/two-merchants.conf
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pvgate/nginx/examples)
# Monitoring (README, Monitoring): alert rules and a dashboard for the operator's Prometheus and
# Grafana to load; nothing on this host reads them.
install(FILES ${PVGATE_PKG_DIR}/prometheus/pvgate-alerts.yml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pvgate/prometheus)
install(FILES ${PVGATE_PKG_DIR}/grafana/pvgate-dashboard.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pvgate/grafana)

# -- man page and documentation (gzip -9n: reproducible, as Debian policy wants) ----------------
find_program(PVGATE_GZIP gzip REQUIRED)
if(DEFINED ENV{SOURCE_DATE_EPOCH})
  string(TIMESTAMP PVGATE_MAN_DATE "%Y-%m-%d" UTC)
  string(TIMESTAMP PVGATE_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
else()
  # The date of the last commit, so a rebuild of the same tree gives the same files.
  execute_process(COMMAND git -C ${PROJECT_SOURCE_DIR} log -1 --format=%ct
                  OUTPUT_VARIABLE _epoch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT _epoch MATCHES "^[0-9]+$")
    string(TIMESTAMP _epoch "%s" UTC)
  endif()
  set(_saved_epoch "$ENV{SOURCE_DATE_EPOCH}")
  set(ENV{SOURCE_DATE_EPOCH} ${_epoch})
  string(TIMESTAMP PVGATE_MAN_DATE "%Y-%m-%d" UTC)
  string(TIMESTAMP PVGATE_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
  unset(ENV{SOURCE_DATE_EPOCH})
endif()
set(PVGATE_VERSION ${PROJECT_VERSION})
set(PVGATE_DEB_VERSION ${PROJECT_VERSION})
configure_file(${PVGATE_PKG_DIR}/pvgate.8 ${PVGATE_PKG_OUT}/pvgate.8 @ONLY)
configure_file(${PVGATE_PKG_DIR}/debian/changelog.in ${PVGATE_PKG_OUT}/changelog @ONLY)
configure_file(${PVGATE_PKG_DIR}/debian/copyright ${PVGATE_PKG_OUT}/copyright @ONLY)
add_custom_command(
  OUTPUT ${PVGATE_PKG_OUT}/pvgate.8.gz ${PVGATE_PKG_OUT}/changelog.gz
  COMMAND ${PVGATE_GZIP} -9n -c ${PVGATE_PKG_OUT}/pvgate.8 > ${PVGATE_PKG_OUT}/pvgate.8.gz
  COMMAND ${PVGATE_GZIP} -9n -c ${PVGATE_PKG_OUT}/changelog > ${PVGATE_PKG_OUT}/changelog.gz
  DEPENDS ${PVGATE_PKG_OUT}/pvgate.8 ${PVGATE_PKG_OUT}/changelog
  COMMENT "Compressing pvgate.8 and changelog"
  VERBATIM)
add_custom_target(pvgate_docs ALL
  DEPENDS ${PVGATE_PKG_OUT}/pvgate.8.gz ${PVGATE_PKG_OUT}/changelog.gz)
install(FILES ${PVGATE_PKG_OUT}/pvgate.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PVGATE_PKG_OUT}/copyright
              ${PVGATE_PKG_OUT}/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/conf/pvgate.yaml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${PVGATE_PKG_DIR}/debian/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME pvgate)

# -- Debian package -----------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pvgate)
set(CPACK_PACKAGE_VERSION ${PVGATE_DEB_VERSION})
set(CPACK_PACKAGE_CONTACT "${PVGATE_DEB_MAINTAINER}")
set(CPACK_PACKAGE_VENDOR "pvgate")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "FastCGI gate to Pipwave's phone-verify API")
# The extended description (CPack puts the summary above it).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "pvgate lets a web shop verify a customer's phone number by SMS through
Pipwave's phone-verify API without the merchant's API secret ever reaching
a browser. It runs behind nginx over FastCGI, validates and throttles every
request (a defence against SMS pumping), signs the call and forwards it over
verified HTTPS, and answers the browser with a sanitized JSON object.
.
The package runs it as the system user pvgate, under systemd socket
activation (pvgate.socket) or, alternatively, spawn-fcgi and multiwatch.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${PVGATE_HOMEPAGE}")
set(CPACK_DEBIAN_PACKAGE_SECTION web)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Merged with what dpkg-shlibdeps finds. adduser: postinst creates the user; openssl: postinst
# makes the verification token's signing key (/etc/pvgate/token-key.pem) with `openssl genpkey`
# and the ALTCHA key (/etc/pvgate/altcha.key) with `openssl rand`.
# ca-certificates: every call to Pipwave (and to a CAPTCHA provider's siteverify) is HTTPS
# verified against the system store, /etc/ssl/certs.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, ca-certificates, openssl")
# pvgate.socket needs neither; pvgate-spawn-fcgi.service needs both. nginx is the web server
# the shipped snippets are for; not a Recommends, so installing pvgate never pulls in (and
# starts) a web server on a host that has another.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nginx, spawn-fcgi, multiwatch")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PVGATE_PKG_DIR}/debian/conffiles
    ${PVGATE_PKG_DIR}/debian/postinst
    ${PVGATE_PKG_DIR}/debian/prerm
    ${PVGATE_PKG_DIR}/debian/postrm)
# 0755 maintainer scripts, 0644 conffiles, whatever the source tree's modes are.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
include(CPack)
